"""Audio envelopes: 8 filters on a 5-minute 44.1 kHz track, offline and streaming.

Offline, ours (audio.envelopes.analyze): each filter over the whole signal at once (scipy
sosfilt, float32, filters in parallel threads), RMS per frame with one reduceat. Baseline, side
by side on the same signal: a straightforward per-frame loop (filter each frame's window with
the carried state, then its RMS). Both give the same values (checked). Streaming: the cost of
one 512-sample block through 8 filters, as a share of the block's duration.

Run: .venv/bin/python bench/audio.py
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import numpy as np
import scipy
from scipy import signal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from audio.envelopes import analyze, design_filter, frame_starts
from audio.load import Track
from audio.stream import StreamingEnvelopes
from engine.settings import AudioFilter, AudioSettings

RATE, SECONDS, FPS = 44100, 300, 30
FILTERS = [
    AudioFilter(name=f"f{index}", f_center=centre, f_width=centre * 0.6)
    for index, centre in enumerate([60, 120, 250, 500, 1000, 2000, 4000, 8000])
]


def ours(samples: np.ndarray) -> np.ndarray:
    """The engine's own path: audio.envelopes.analyze (filters in parallel threads)."""
    track = Track(samples, RATE, Path("bench.wav"))
    settings = AudioSettings(filters=FILTERS, normalize="none")
    values = analyze(track, settings, SECONDS * FPS, FPS, need={f.name for f in FILTERS}).values
    return np.stack([values[f.name] for f in FILTERS])


def baseline(samples: np.ndarray, starts: np.ndarray) -> np.ndarray:
    bands = [design_filter(f, RATE) for f in FILTERS]
    states = [np.zeros((band.sos.shape[0], 2), dtype=np.float32) for band in bands]
    out = np.zeros((len(bands), len(starts) - 1))
    for frame in range(len(starts) - 1):
        window = samples[starts[frame] : starts[frame + 1]]
        for index, band in enumerate(bands):
            filtered, states[index] = signal.sosfilt(band.sos, window, zi=states[index])
            out[index, frame] = np.sqrt(np.mean(np.square(filtered, dtype=np.float64)))
    return out


def main() -> None:
    rng = np.random.default_rng(0)
    samples = (rng.standard_normal(RATE * SECONDS) * 0.2).astype(np.float32)
    starts = frame_starts(SECONDS * FPS, FPS, RATE)

    runs = []
    for _ in range(5):
        started = time.perf_counter()
        fast = ours(samples)
        runs.append(time.perf_counter() - started)
    ours_time = sorted(runs)[len(runs) // 2]  # the median of 5 runs
    started = time.perf_counter()
    slow = baseline(samples, starts)
    base_time = time.perf_counter() - started
    assert np.allclose(fast, slow, rtol=1e-4, atol=1e-6), "the two paths disagree"

    stream = StreamingEnvelopes(FILTERS, RATE, FPS)
    blocks = [samples[i : i + 512] for i in range(0, RATE * 20, 512)]
    started = time.perf_counter()
    for block in blocks:
        stream.feed(block)
    per_block = (time.perf_counter() - started) / len(blocks)
    block_seconds = 512 / RATE

    print(f"machine: {platform.machine()}, Python {platform.python_version()}, scipy {scipy.__version__}")
    print(f"8 filters, {SECONDS // 60}-minute track at {RATE} Hz, {FPS} fps")
    print(f"  per-frame loop (baseline)    {base_time:7.2f} s = {SECONDS / base_time:6.0f}x real time")
    print(
        f"  whole signal (ours, median)  {ours_time:7.2f} s = {SECONDS / ours_time:6.0f}x real time   "
        f"(target >= 300x; {base_time / ours_time:.1f}x the baseline)"
    )
    print(
        f"  streaming, one 512-sample block: {per_block * 1e3:.3f} ms = {per_block / block_seconds:.1%} of the "
        f"block's {block_seconds * 1e3:.1f} ms   (target < 5%)"
    )


if __name__ == "__main__":
    main()
