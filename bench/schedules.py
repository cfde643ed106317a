"""Schedules: ours against Deforum's own parser on the same strings.

Baseline: ``FrameInterpolater.parse_inbetweens`` from sd-webui-deforum's
``animation_key_frames.py`` (bench/anchors, its code byte for byte): ``parse_key_frames`` splits
the string at every ``,`` and ``:`` (``numexpr.evaluate`` for a position that is not a number),
then ``get_inbetweens`` fills a pandas Series frame by frame - a number where a keyframe is one,
``numexpr.evaluate`` of the expression on every frame from an expression keyframe on - and
``Series.interpolate(method="linear", limit_direction="both")``. Ours: ``compile_schedule`` in
hold mode (Deforum's reading) and ``evaluate``; the values are checked equal in the run.

Cases: a real published schedule of 410 keyframes (tests/data/corpus, 100 frames); a per-frame
export of 6001 keyframes rendered for 150 frames; 10 expression keyframes and 10 numeric
keyframes over 1000 frames; 20 assorted schedules over 10,000 frames; and the live path
(``Schedule.at``, one frame at a time) in microseconds.

Run: .venv/bin/python bench/schedules.py [--json]
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.anchors import deforum_frame_interpolater
from bench.common import arguments, median_seconds, report, side_by_side
from engine.schedule import Timeline, compile_schedule

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "corpus"
REAL_FILE = CORPUS / "iljush__docker-stable-diffusion-webui__deforum.json"
ASSORTED = [
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
    "0:(0.5+0.5*tanh(t-5000))",
    "0:(sqrt(t)/100)",
    "0:(0.065)",
    "0:(70), 3000:(90), 6000:(50)",
    "0:(2*sin(t/11)+cos(t/3))",
    "0:(log(1+t))",
    "0:(tanh(t/1000-5))",
]


def per_frame_export(keyframes: int) -> str:
    """A schedule written out frame by frame, as audio-keyframe tools export one."""
    return ", ".join(f"{i}: ({1 + 0.04 * np.sin(i / 9) * np.cos(i / 31):.4f})" for i in range(keyframes))


def cases() -> dict[str, tuple[list[str], int]]:
    real = json.loads(REAL_FILE.read_text())
    expressions = ", ".join(f"{100 * k}:({k + 1}*sin(t/{k + 7})+{k}*cos(t/13))" for k in range(10))
    numbers = ", ".join(f"{100 * k}:({0.4 + 0.05 * k:.2f})" for k in range(10))
    return {
        "real file, 410 keyframes, 100 frames": ([real["strength_schedule"]], int(real["max_frames"])),
        "per-frame export, 6001 keyframes, 150 frames": ([per_frame_export(6001)], 150),
        "10 expression keyframes, 1000 frames": ([expressions], 1000),
        "10 numeric keyframes, 1000 frames": ([numbers], 1000),
        "20 assorted schedules, 10000 frames": (ASSORTED, 10_000),
    }


def deforum_values(interpolater, texts: list[str], frames: int) -> list[np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas' FutureWarning on Deforum's string writes
        return [interpolater(frames, -1).parse_inbetweens(text).to_numpy(dtype=float) for text in texts]


def our_values(texts: list[str], frames: int) -> list[np.ndarray]:
    timeline = Timeline(frames)
    return [compile_schedule(text, timeline, blend="hold").evaluate() for text in texts]


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    options = parser.parse_args()
    interpolater = deforum_frame_interpolater()
    results = {}
    print("schedules: Deforum's FrameInterpolater against ours (compile + evaluate), median, run in turn")
    for name, (texts, frames) in cases().items():
        theirs, ours = deforum_values(interpolater, texts, frames), our_values(texts, frames)
        for text, a, b in zip(texts, ours, theirs, strict=True):
            assert np.allclose(a, b, rtol=0, atol=1e-9), f"values differ for {text[:60]}"
        times = side_by_side(
            {
                "baseline": lambda _, t=texts, f=frames: deforum_values(interpolater, t, f),
                "ours": lambda _, t=texts, f=frames: our_values(t, f),
            },
            3 if frames >= 10_000 else options.repeats,
        )
        base, mine = times["baseline"], times["ours"]
        results[name] = {"baseline_ms": base * 1e3, "ours_ms": mine * 1e3, "speedup": base / mine}
        print(f"  {name:46} Deforum {base * 1e3:9.2f} ms   ours {mine * 1e3:8.3f} ms   {base / mine:7.1f}x")
    compiled = [compile_schedule(text, Timeline(10_000), blend="hold") for text in ASSORTED]
    frames = 2000
    live = median_seconds(lambda _: [s.at(t) for s in compiled for t in range(frames)], 3)
    live_us = live / (len(compiled) * frames) * 1e6
    print(f"  live path, one frame of one schedule: {live_us:.1f} us")
    headline = results["per-frame export, 6001 keyframes, 150 frames"]
    report(
        {
            "ours_ms": headline["ours_ms"],
            "baseline_ms": headline["baseline_ms"],
            "speedup": headline["speedup"],
            "cases": results,
            "live_us_per_schedule": live_us,
        },
        options.json,
    )


if __name__ == "__main__":
    main()
