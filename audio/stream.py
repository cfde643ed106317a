"""Streaming envelopes: the same filters run block by block with carried state.

Fed the same samples in blocks of any size, it yields the same raw per-frame RMS values as
the offline path (the same filters, their state carried; frame windows aligned the same way),
so live mode sees what a render of the recording would see. Normalisation here is running
(the peak so far), as a live input has no end to look at.
"""

from __future__ import annotations

import math

import numpy as np

from audio.envelopes import design_filter
from engine.settings import AudioFilter


class StreamingEnvelopes:
    def __init__(self, filters: list[AudioFilter], rate: int, fps: float) -> None:
        self.rate, self.fps = rate, fps
        self.bands = [design_filter(spec, rate) for spec in filters]
        self.names = [band.name for band in self.bands] + ["amp"]
        self.states = [np.zeros((len(band.sos), 2)) for band in self.bands]  # sosfilt's zi, from rest
        self.position = 0  # samples consumed
        self.frame = 0  # the frame being accumulated
        self.sums = np.zeros(len(self.names))  # sum of squares so far in that frame's window
        self.peaks = np.zeros(len(self.names))
        self._next_start = self._start(1)

    def _start(self, frame: int) -> int:
        """The first sample of ``frame``'s window, computed as ``frame_starts`` does."""
        return math.floor((0.0 + frame / self.fps) * self.rate + 1e-6)

    def feed(self, block: np.ndarray) -> list[np.ndarray]:
        """Consume samples; return the raw RMS rows (one value per name) of frames completed."""
        block = np.asarray(block, dtype=np.float32)
        channels = []
        for index, band in enumerate(self.bands):
            filtered, self.states[index] = band.run(block, self.states[index])
            channels.append(filtered)
        channels.append(block)
        squares = np.square(np.stack(channels), dtype=np.float64)
        completed = []
        offset = 0
        while offset < len(block):
            take = min(self._next_start - (self.position + offset), len(block) - offset)
            self.sums += squares[:, offset : offset + take].sum(axis=1)
            offset += take
            if self.position + offset == self._next_start:
                length = self._next_start - self._start(self.frame)
                completed.append(np.sqrt(self.sums / max(length, 1)))
                self.sums[:] = 0.0
                self.frame += 1
                self._next_start = self._start(self.frame + 1)
        self.position += len(block)
        return completed

    def normalised(self, row: np.ndarray) -> dict[str, float]:
        """A raw row scaled by each envelope's running peak (0..1)."""
        self.peaks = np.maximum(self.peaks, row)
        scaled = np.divide(row, self.peaks, out=np.zeros_like(row), where=self.peaks > 0)
        return dict(zip(self.names, scaled.tolist(), strict=True))
