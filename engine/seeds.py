"""Seeds per diffused frame: Deforum's iter, fixed, random, ladder, alternate and schedule.

A pure function of (start seed, behaviour, index), so a resumed run gets the seeds an
uninterrupted one would have. ``random`` is reproducible: drawn from the start seed.
"""

from __future__ import annotations

import numpy as np

SEED_LIMIT = 2**32


def pick_seed() -> int:
    """A fresh seed for ``seed = -1``; the run records it."""
    return int(np.random.default_rng().integers(0, SEED_LIMIT))


def random_seed(start: int, index: int) -> int:
    return int(np.random.default_rng([start % SEED_LIMIT, index]).integers(0, SEED_LIMIT))


def redo_seed(seed: int, attempt: int) -> int:
    """The seed of a redo's throwaway generation (Deforum draws a random one): drawn from the
    frame's seed, so a resumed run redoes the same."""
    return int(np.random.default_rng([seed % SEED_LIMIT, attempt, 1]).integers(0, SEED_LIMIT))


def seed_at(start: int, behavior: str, index: int, *, iter_n: int = 1, scheduled: float | None = None) -> int:
    """The seed of the ``index``-th diffused frame (0-based), as Deforum's ``next_seed`` steps it."""
    if behavior == "fixed":
        seed = start
    elif behavior == "iter":
        seed = start + (index + iter_n - 1) // iter_n  # +1 on the 1st, (N+1)th, ... call of next_seed
    elif behavior == "ladder":
        seed = start + (index + 1) // 2 * 2 - index // 2  # +2, -1, +2, -1 ...
    elif behavior == "alternate":
        seed = start + index % 2  # +1, -1, +1 ...
    elif behavior == "schedule" and scheduled is not None and int(scheduled) != -1:
        seed = int(scheduled)
    else:  # random, or -1 in the seed schedule
        seed = start if index == 0 and behavior == "random" else random_seed(start, index)
    return seed % SEED_LIMIT
