"""Schedules: compile + evaluate 20 schedules x 10,000 frames, against per-frame evaluation.

Baseline: the straightforward way (Deforum's): split each string into keyframes once, then
for every frame evaluate the active keyframe expressions with numexpr at that ``t`` and tween.
Ours: compile once, evaluate every frame vectorised. Also: the per-frame live path
(``Schedule.at``) in microseconds per schedule. Prints ratios measured side by side.

Run: .venv/bin/python bench/schedules.py
"""

from __future__ import annotations

import platform
import re
import sys
import time
from pathlib import Path

import numexpr
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from engine.schedule import Timeline, compile_schedule

FRAMES = 10_000
SCHEDULES = [
    "0:(1.0025+0.002*sin(1.25*3.14*t/30))",
    "0:(10*sin(2*3.14*t/10))",
    "0:(-0.35*(cos(3.141*t/25)**100)+0.8)",
    "0:(0.375*(t%5)+15)",
    "0:(sin(t)), 100:(4)",
    "0:(-2), 100:(4)",
    "0:(0), 2500:(1), 5000:(0), 7500:(1)",
    "0:(10*sin(2*3.14*t/10)), 50:(20*sin(4*3.14*t/40)), 100:(cos(t/10))",
    "0:(0.65), 50:(0.4), 100:(0.65)",
    "0:(1.02+0.02*sin(2*3.14*t/20))",
    "0:(abs(sin(t/7))*3)",
    "0:(0.5+0.5*cos(t/13)), 5000:(exp(-t/4000))",
    "0:(t/10000)",
    "0:(where(t>5000, 1.0, 0.0))",
    "0:(sqrt(t)/100)",
    "0:(0.065)",
    "0:(70), 3000:(90), 6000:(50)",
    "0:(2*sin(t/11)+cos(t/3))",
    "0:(log(1+t))",
    "0:(tanh(t/1000-5))",
]


def baseline(text: str, frames: int) -> np.ndarray:
    """Per-frame evaluation of the same string: parse once, numexpr per frame, tween."""
    pattern = r"(?P<frame>[0-9]+):[\s]*\((?P<param>[\S\s]*?)\)([,][\s]?|[\s]?$)"  # Deforum's notebook regex
    keys = [(float(m["frame"]), m["param"]) for m in re.finditer(pattern, text)]
    out = np.empty(frames)
    for t in range(frames):
        index = max(i for i, (p, _) in enumerate(keys) if p <= t) if t >= keys[0][0] else 0
        p0, e0 = keys[index]
        v0 = float(numexpr.evaluate(e0, local_dict={"t": float(t)}))
        if index + 1 < len(keys):
            p1, e1 = keys[index + 1]
            w = (t - p0) / (p1 - p0)
            v1 = float(numexpr.evaluate(e1, local_dict={"t": float(t)}))
            out[t] = (1 - w) * v0 + w * v1
        else:
            out[t] = v0
    return out


def best_of(runs: int, work) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    timeline = Timeline(FRAMES)
    ours_result = [compile_schedule(text, timeline).evaluate() for text in SCHEDULES]
    base_result = [baseline(text, FRAMES) for text in SCHEDULES]
    for text, a, b in zip(SCHEDULES, ours_result, base_result, strict=True):
        assert np.allclose(a, b, rtol=1e-9, atol=1e-9), f"results differ for {text}"

    ours = best_of(5, lambda: [compile_schedule(text, timeline).evaluate() for text in SCHEDULES])
    base = best_of(1, lambda: [baseline(text, FRAMES) for text in SCHEDULES])
    compiled = [compile_schedule(text, timeline) for text in SCHEDULES]
    live_frames = 2_000
    live = best_of(3, lambda: [s.at(t) for s in compiled for t in range(live_frames)])
    per_schedule_us = live / (len(compiled) * live_frames) * 1e6

    print(
        f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}, "
        f"numexpr {numexpr.__version__}, numexpr threads {numexpr.get_num_threads()}"
    )
    print(f"{len(SCHEDULES)} schedules x {FRAMES} frames")
    print(f"  per-frame baseline        {base * 1e3:9.1f} ms")
    print(f"  compile + vectorised      {ours * 1e3:9.1f} ms")
    print(f"  speed-up                  {base / ours:9.0f}x   (target >= 50x)")
    print(f"  live path, one frame      {per_schedule_us:9.1f} us per schedule   (target < 50 us)")


if __name__ == "__main__":
    main()
