"""The jitter buffer of the page's audio: bunched-up network arrivals come out at the pace the
sender captured them, in order, none held past the delay, and clock drift does not pile up."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from audio.jitter import JitterBuffer
from audio.live import PushedSource
from engine.settings import AudioFilter

BLOCK = 2048 / 48000  # the page's blocks: 42.7 ms of sound each


def simulate(buffer: JitterBuffer, arrivals: list[tuple[float, float]], step: float = 0.001) -> list[float]:
    """Feed (stamp, arrival) pairs in arrival order while ticking our clock by ``step``: the
    release time of each block, in order."""
    released: list[tuple[int, float]] = []
    pending = sorted(enumerate(arrivals), key=lambda item: item[1][1])
    now, last = 0.0, max(arrival for _, arrival in arrivals) + 1.0
    while now < last:
        while pending and pending[0][1][1] <= now:
            index, (stamp, _) = pending.pop(0)
            buffer.add(index, stamp, now)
        released += [(index, now) for index in buffer.due(now)]
        now += step
    assert [index for index, _ in released] == list(range(len(arrivals)))  # all of them, in order
    return [when for _, when in released]


def test_bursts_come_out_at_the_capture_pace_and_none_waits_past_the_delay():
    random = np.random.default_rng(7)
    stamps = [100.0 + BLOCK * n for n in range(400)]
    trips = 0.020 + random.exponential(0.015, len(stamps))  # 20 ms and up, a long tail
    trips[100:110] = 0.020 + np.linspace(0.2, 0.0, 10)  # a stall: ten blocks arrive at once
    arrived = np.maximum.accumulate(5.0 + np.array(stamps) - 100.0 + trips)  # over TCP: in order
    arrivals = list(zip(stamps, arrived, strict=True))
    released = np.array(simulate(JitterBuffer(delay=0.06), arrivals))[20:]  # once the fast trip is seen
    stamps, arrived = np.array(stamps)[20:], arrived[20:]
    waited, lag = released - arrived, released - stamps
    late = lag > np.median(lag) + 0.002  # arrived after its time: released at once
    assert np.abs(lag[~late] - np.median(lag)).max() <= 0.002  # the rest at the capture pace, to the tick
    assert late.mean() < 0.1 and waited[late].max() <= 0.002
    assert waited.min() >= -1e-9 and waited.max() <= 0.06 + 0.002  # none held past the delay


@pytest.mark.parametrize("drift", [1e-3, -1e-3])  # the sender's clock 0.1 % fast or slow: far more than real ones
def test_clock_drift_does_not_pile_up(drift):
    stamps = [BLOCK * n * (1 + drift) for n in range(3000)]  # two minutes of sound
    arrivals = [(stamp, BLOCK * n + 0.025) for n, stamp in enumerate(stamps)]
    buffer = JitterBuffer(delay=0.05, window=10.0)
    released = simulate(buffer, arrivals, step=0.0005)
    held = np.array(released) - np.array([arrival for _, arrival in arrivals])
    assert held.max() <= 0.05 + 0.001  # never more than the delay (to the simulation's tick)
    assert held[-100:].min() >= 0.05 - 10 * abs(drift) - 0.001  # nor less than a window's drift: it follows


def test_the_page_source_hands_every_block_to_the_filters_in_order():
    """PushedSource on its real release thread: blocks pushed in bursts all reach the envelopes."""
    source = PushedSource([AudioFilter(name="fLo", f_center=100, f_width=80)], fps=24, rate=48000, jitter=0.02)
    seen: list[float] = []
    done = threading.Event()
    original = source.envelopes.push

    def record(block, stamp=None):
        seen.append(stamp)
        original(block, stamp)
        if len(seen) == 30:
            done.set()

    source.envelopes.push = record
    try:
        start = time.perf_counter() * 1e3
        for burst in range(3):  # three bursts of ten blocks, as after a stall
            for n in range(10):
                source.push(np.zeros(2048, np.float32), start + (burst * 10 + n) * BLOCK * 1e3)
        assert done.wait(30), f"only {len(seen)} of 30 blocks came through"
        assert seen == sorted(seen) and len(set(seen)) == 30
    finally:
        source.close()
