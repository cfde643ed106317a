"""The engine process's CPU tuning, each in a fresh interpreter (it changes the whole process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FAULTS = """
import json, resource, sys
import numpy as np
sys.path.insert(0, {root!r})
from engine.cpu_tuning import keep_freed_memory

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):  # a 512x512 frame's temporaries, made and freed
        a = np.ones(3 * 512 * 512, np.float32); b = a * 2; c = b + a; del a, b, c
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

print(json.dumps({{"default": faults(), "kept": keep_freed_memory(), "after": faults()}}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_frame_temporaries_are_kept_instead_of_faulting_in_fresh_pages():
    result = json.loads(subprocess.run([sys.executable, "-c", FAULTS.format(root=str(ROOT))], **_QUIET).stdout)
    assert result["kept"] is True
    pages_a_round = 3 * 3 * 512 * 512 * 4 // 4096
    assert result["default"] > 10 * pages_a_round  # glibc's defaults: fresh pages nearly every round
    assert result["after"] < 2 * pages_a_round  # kept: at most the first round's


THREADS = """
import json, sys
sys.path.insert(0, {root!r})
from engine.cpu_tuning import tune_for_frames
{before}
tune_for_frames()
import numpy, scipy.linalg
from threadpoolctl import threadpool_info
print(json.dumps(sorted({{pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}})))
"""


@pytest.mark.parametrize("before", ["", "import numpy"], ids=["numpy-loaded-after", "numpy-loaded-before"])
def test_numpy_and_scipy_blas_run_on_one_thread(before):
    environment = {key: value for key, value in os.environ.items() if key != "OPENBLAS_NUM_THREADS"}
    script = THREADS.format(root=str(ROOT), before=before)
    assert json.loads(subprocess.run([sys.executable, "-c", script], env=environment, **_QUIET).stdout) == [1]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenBLAS runs at most a thread a core")
def test_a_blas_thread_count_the_user_set_stands():
    environment = {**os.environ, "OPENBLAS_NUM_THREADS": "2"}
    script = THREADS.format(root=str(ROOT), before="")
    assert json.loads(subprocess.run([sys.executable, "-c", script], env=environment, **_QUIET).stdout) == [2]


_QUIET = {"capture_output": True, "text": True, "check": True, "timeout": 120}
