"""Render helpers shared by the mode tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.modes import Interrupted
from engine.protocol import FrameWritten
from engine.render import RenderResult, render
from engine.settings import Settings


def whole_and_resumed(
    settings_in: Callable[[str], Settings], backend, stop_after: int
) -> tuple[RenderResult, RenderResult]:
    """The same run rendered whole (outdir "whole"), and stopped after ``stop_after`` frames then
    resumed (outdir "parts")."""
    whole = render(settings_in("whole"), backend=backend)
    written = []
    with pytest.raises(Interrupted):
        render(
            settings_in("parts"),
            backend=backend,
            should_stop=lambda: len(written) >= stop_after,
            on_event=lambda event: written.append(event) if isinstance(event, FrameWritten) else None,
        )
    parts = settings_in("parts")
    batch = Path(parts.batch.outdir) / parts.batch.batch_name
    timestring = next(run.name for run in batch.iterdir() if (run / "state.json").exists())
    return whole, render(parts, backend=backend, resume=timestring)


def same_frames(first: RenderResult, second: RenderResult) -> bool:
    """Pixel for pixel, frame for frame."""
    read = [[cv2.imread(str(path), cv2.IMREAD_UNCHANGED) for path in r.frames] for r in (first, second)]
    return len(read[0]) == len(read[1]) and all(np.array_equal(a, b) for a, b in zip(*read, strict=True))
