"""What every bench shares: medians of timed runs, the machine in words, and ``--json``."""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator


def median_seconds(work: Callable[[int], object], repeats: int, sync: Callable[[], None] = lambda: None) -> float:
    """Median wall time of ``work(i)`` over ``repeats`` runs after one warm-up run."""
    work(0)
    sync()
    times = []
    for index in range(repeats):
        with _no_collection():
            start = time.perf_counter()
            work(index + 1)
            sync()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def side_by_side(
    works: dict[str, Callable[[int], object]], repeats: int, sync: Callable[[], None] = lambda: None
) -> dict[str, float]:
    """Median wall time of each work, the works run in turn round after round (one warm-up
    round first), so a slow spell of a shared machine falls on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in works}
    for index in range(repeats + 1):
        for name, work in works.items():
            with _no_collection():
                start = time.perf_counter()
                work(index)
                sync()
                if index:
                    times[name].append(time.perf_counter() - start)
    return {name: statistics.median(spans) for name, spans in times.items()}


@contextlib.contextmanager
def _no_collection() -> Iterator[None]:
    """The garbage collector off while a run is timed, as ``timeit`` does: one work's garbage
    is not collected in another's time."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores{gpu}, Python {platform.python_version()}, torch {torch.__version__}"


def arguments(description: str) -> argparse.ArgumentParser:
    """The bench's command line; the process tuned as main.py tunes it (engine/cpu_tuning.py),
    for the baselines too, as A1111's webui.sh gives Deforum TCMalloc."""
    from engine.cpu_tuning import tune_for_frames

    tune_for_frames()
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    return parser


def report(result: dict, as_json: bool) -> None:
    """The result as one JSON line when asked (after the human-readable lines)."""
    if as_json:
        print(json.dumps({"machine": machine(), **result}))
