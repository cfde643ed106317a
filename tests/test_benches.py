"""The benches run and end with one JSON object (``--json``); their baselines are checked
against ours inside each run (schedule values, frame shapes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "bench",
    [
        ["frame_ops.py", "--repeats", "1"],
        ["schedules.py", "--repeats", "1"],
        ["live.py", "--serve", "--seconds", "1"],
        ["sweep.py", "--variants", "2", "--frames", "2", "--backend", "preview"],
    ],
    ids=lambda bench: " ".join(bench),
)
def test_a_bench_prints_one_json_object_last(bench):
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / bench[0]), *bench[1:], "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ours_ms"] > 0 and result["baseline_ms"] > 0 and result["machine"]
