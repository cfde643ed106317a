"""A jitter buffer for audio that comes over a network: blocks released on this machine's clock
at the pace the sender captured them, however they bunched up on the way.

Each block carries the sender's clock at its capture (its *stamp*). The sender's clock is mapped
to ours by the smallest ``arrival - stamp`` seen in the last ``window`` seconds: the fastest trip,
which a late block cannot raise and which follows clock drift as old trips leave the window. A
block is released at ``stamp + offset + delay``, so bursts come out evenly spaced and no block
waits longer than ``delay`` after it arrived. Pure bookkeeping: the caller's thread asks what is
due (:meth:`JitterBuffer.due`) and sleeps until :meth:`JitterBuffer.next_release`.
"""

from __future__ import annotations

from collections import deque
from typing import Any


class JitterBuffer:
    """Items with sender stamps (seconds) in, the same items out in order at their release times."""

    def __init__(self, delay: float, window: float = 10.0) -> None:
        self.delay, self.window = delay, window
        self._held: deque[tuple[float, Any]] = deque()  # (stamp, item), in arrival order
        self._trips: deque[tuple[float, float]] = deque()  # (arrival, offset), offsets increasing

    def add(self, item: Any, stamp: float, arrived: float) -> None:
        """Hold ``item``, stamped ``stamp`` by the sender, which arrived at ``arrived`` (our clock)."""
        offset = arrived - stamp
        while self._trips and self._trips[-1][1] >= offset:  # a faster trip makes slower ones moot
            self._trips.pop()
        self._trips.append((arrived, offset))
        while self._trips[0][0] < arrived - self.window and len(self._trips) > 1:
            self._trips.popleft()
        self._held.append((stamp, item))

    @property
    def offset(self) -> float | None:
        """Our clock minus the sender's over the fastest recent trip (None before any block)."""
        return self._trips[0][1] if self._trips else None

    def next_release(self) -> float | None:
        """When the oldest held item is due (our clock), None when nothing is held."""
        if not self._held:
            return None
        return self._held[0][0] + self.offset + self.delay

    def due(self, now: float) -> list[Any]:
        """The held items due by ``now``, oldest first, taken out of the buffer."""
        released = []
        while self._held and self._held[0][0] + self.offset + self.delay <= now:
            released.append(self._held.popleft()[1])
        return released

    def __len__(self) -> int:
        return len(self._held)
