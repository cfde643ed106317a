"""bench/gpu.sh --dry-run: the GPU bench end to end on the CPU (tiny models), as a real subprocess:
every section runs, the table is printed and the last line is the JSON object with every measure."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MEASURES = [
    "generation_ms",
    "non_model_ms",
    "ours_ms",
    "baseline_ms",
    "overhead_share",
    "non_model_share",
    "bare_fps",
    "live_fps",
    "live_ratio",
    "live_latency_ms",
    "bare_taesd_fps",
    "live_taesd_fps",
    "live_taesd_ratio",
    "depth_ms",
    "warp_ms",
    "depth_warp_ms",
]


def test_the_dry_run_prints_the_table_and_one_json_object_last(tmp_path: Path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu.sh"), "--dry-run", "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert any(line.split() == ["measure", "value", "goal", "met"] for line in lines), done.stdout
    for heading in ("a. img2img frame, SD-1.5", "b. live loop, sd-turbo", "c. 3D warp with depth", "d. peak VRAM"):
        assert any(line.strip().startswith(heading) for line in lines), heading
    assert "error" not in "\n".join(lines[:-1])  # no section failed, no row left unfilled
    assert "peak (depth + warp + img2img)" in done.stdout and "n/a (CPU)" in done.stdout

    result = json.loads(lines[-1])
    assert result["dry_run"] is True and result["errors"] == {} and result["machine"]
    for key in MEASURES:
        assert isinstance(result[key], float) and result[key] == result[key], key  # a number, not NaN
    for key in ("generation_ms", "non_model_ms", "ours_ms", "bare_fps", "live_fps", "depth_warp_ms"):
        assert result[key] > 0, key
    assert result["baseline_ms"] == result["generation_ms"]
    assert result["img2img_steps_run"] == 1 and result["depth_input"] == [56, 56]
    assert result["peak_vram_gib"] is None  # no GPU here
    assert result["goals"] == {"overhead_share": 0.05, "live_fps": 60.0, "live_ratio": 0.9, "peak_vram_gib": 4.0}
    assert set(result["met"]) == set(result["goals"]) and all(v is None for v in result["met"].values())
    assert list(tmp_path.glob("driftwave-gpu-bench-*")) == []  # the temporary models are gone
