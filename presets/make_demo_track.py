"""Synthesise presets/demo_track.flac: 8 s at 120 BPM (kick, hats, bass), for the demo preset.

Run: .venv/bin/python presets/make_demo_track.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

RATE = 22050
BPM = 120
BARS = 4  # 4 bars of 4 beats at 120 BPM = 8 s


def track() -> np.ndarray:
    beat = 60 / BPM
    length = int(RATE * beat * 4 * BARS)
    out = np.zeros(length)
    rng = np.random.default_rng(120)
    t = np.arange(int(RATE * 0.35)) / RATE
    kick = np.sin(2 * np.pi * (50 * t + 140 / 30 * (1 - np.exp(-30 * t)))) * np.exp(-9 * t)
    kick[:40] += rng.standard_normal(40) * np.linspace(0.6, 0, 40)  # the beater's click
    hat_t = np.arange(int(RATE * 0.05)) / RATE
    noise = rng.standard_normal(len(hat_t))
    hat = np.diff(noise, prepend=0.0) * np.exp(-90 * hat_t) * 0.06
    notes = [55.0, 55.0, 65.4, 49.0]  # A1 A1 C2 G1, one per bar
    for index in range(4 * BARS):
        start = int(index * beat * RATE)
        out[start : start + len(kick)] += 0.9 * kick[: length - start]
        off = int((index + 0.5) * beat * RATE)
        out[off : off + len(hat)] += hat[: max(length - off, 0)]
    bass_t = np.arange(length) / RATE
    frequency = np.repeat(notes, int(beat * 4 * RATE))[:length]
    phase = 2 * np.pi * np.cumsum(frequency) / RATE
    pump = 0.35 + 0.65 * np.minimum(1.0, (bass_t % beat) / (beat * 0.6))  # ducks under each kick
    out += 0.25 * (np.sin(phase) + 0.3 * np.sin(2 * phase)) * pump
    return (0.8 * out / np.abs(out).max()).astype(np.float32)


if __name__ == "__main__":
    path = Path(__file__).resolve().parent / "demo_track.flac"
    soundfile.write(path, track(), RATE, subtype="PCM_16")
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
