"""Each schedule's per-frame values as the render uses them: a table for ``main.py values``,
``values.csv`` in a run folder and the ``.srt`` subtitles of Deforum's "save generation info".
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from engine.plan import Plan, switched_off


def values_table(plan: Plan, start: int = 0, stop: int | None = None) -> dict[str, list[float]]:
    """``"group.field"`` -> values of frames ``start..stop-1``, for the schedules the run uses."""
    stop = plan.timeline.frames if stop is None else stop
    off = switched_off(plan.settings)
    return {path: [float(v) for v in values[start:stop]] for path, values in plan.values.items() if path not in off}


def as_json(table: dict[str, list[float]]) -> str:
    return json.dumps(table)


def as_csv(table: dict[str, list[float]], start: int = 0) -> str:
    """One row per frame: ``frame`` then every field."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = list(table)
    writer.writerow(["frame", *names])
    rows = len(next(iter(table.values()), []))
    for row in range(rows):
        writer.writerow([start + row, *(f"{table[name][row]:.10g}" for name in names)])
    return out.getvalue()


def as_srt(table: dict[str, list[float]], fps: float) -> str:
    """One subtitle per frame listing the values that move (Deforum's generation-info .srt)."""
    moving = [name for name, values in table.items() if values and np.ptp(values) > 0]
    blocks = []
    rows = len(next(iter(table.values()), []))
    for frame in range(rows):
        text = ", ".join(f"{name.split('.')[-1]}: {table[name][frame]:.6g}" for name in moving) or "(no changes)"
        blocks.append(f"{frame + 1}\n{_time(frame / fps)} --> {_time((frame + 1) / fps)}\nF#: {frame}; {text}\n")
    return "\n".join(blocks)


def _time(seconds: float) -> str:
    milliseconds = round(seconds * 1000)
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d},{rest % 1000:03d}"


def write_atomically(path: Path, text: str) -> Path:
    temporary = path.with_name(f".{path.name}.part")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
    return path
