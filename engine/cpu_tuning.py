"""The process set up for frame work on the CPU: freed blocks kept, numpy's BLAS on one thread.

- glibc hands large freed blocks back to the kernel and trims the top of its heap, so every
  512x512 temporary (3 MB of float32) comes back as zeroed pages: 1700 to 4800 page faults a
  frame in the live preview. ``mallopt`` raises the two thresholds. (A1111's ``webui.sh``
  preloads TCMalloc on Linux for the same reason.)
- numpy's and scipy's OpenBLAS threads spin after each call. Our numpy matrix products are 3x3
  colour mixes that are bound by memory, and a second thread only takes a core from the audio
  thread and torch's own pool: the live preview went from 92 to 60 ms a frame at one thread.
  Torch's MKL is not theirs and keeps its threads.
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD = 32 * 2**20  # blocks up to this come from the heap (glibc's largest on 64-bit)
TRIM_THRESHOLD = 128 * 2**20  # free memory at the heap's top kept, up to this, for the next frame


def tune_for_frames() -> None:
    """Both settings for this process (once is enough; again is harmless)."""
    keep_freed_memory()
    one_blas_thread()


def one_blas_thread() -> None:
    """OpenBLAS on one thread: for libraries loaded from now on and child processes by
    ``OPENBLAS_NUM_THREADS``, for those already loaded by threadpoolctl. A value the user set stands."""
    if "OPENBLAS_NUM_THREADS" in os.environ:
        return
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    if "numpy" in sys.modules:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; False where that is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
