"""PNG plots of schedules (matplotlib, headless), for ``schedule --plot`` and ``inspect --plot``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.errors import DriftwaveError


def plot_curves(
    curves: Sequence[tuple[str, np.ndarray, Sequence[float]]],
    path: str | Path,
    *,
    fps: float,
    title: str | None = None,
    marks: str = "keyframes",
) -> Path:
    """One panel per ``(label, values, keyframe positions)``; frames on x, seconds on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    rows = max(len(curves), 1)
    figure, axes = plt.subplots(rows, 1, figsize=(9, 1.9 * rows + 0.6), sharex=True, squeeze=False)
    for axis, (label, values, keys) in zip(axes[:, 0], curves, strict=False):
        frames = np.arange(len(values))
        axis.plot(frames, values, color="#2a7ab0", linewidth=1.4)
        for key in keys:
            if key < len(values):
                axis.axvline(key, color="#d08030", linewidth=0.8, alpha=0.6)
        axis.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        axis.grid(alpha=0.25)
        axis.margins(x=0)
    axes[-1, 0].set_xlabel(f"frame ({fps:g} fps; orange: {marks})")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.stem}.tmp.png")
        figure.savefig(temporary, dpi=110)
        temporary.replace(path)
    except OSError as error:
        raise DriftwaveError(
            f"cannot write the plot {str(path)!r}: {error}", hint="choose a folder you can write to"
        ) from None
    finally:
        plt.close(figure)
    return path
