"""RAFT optical flow (cadence, redo, hybrid motion) measured as Deforum's ``RAFT.predict`` measures
it. torchvision must match the torch build, so the comparison runs in a subprocess with the
Python part of torchvision 0.28 that ``make setup`` unpacks into .test-cache (its C ops are built
for CUDA torch and are not needed), RAFT's weights a random set placed where torch.hub keeps the
real ones. Without torchvision a RAFT setting stops the run before frame 0, naming the field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_flow_cadence import settings_for

from engine import raft
from engine.errors import DriftwaveError
from engine.render import render

ROOT = Path(__file__).resolve().parents[1]
TORCHVISION = ROOT / ".test-cache" / "torchvision"
BOOT = """
import sys, types
for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
    sys.modules[name] = types.ModuleType(name)  # they register kernels for C ops this build lacks
"""
COMPARE = """
import json, pathlib, torch
import numpy as np
from torchvision.models.optical_flow import Raft_Large_Weights, raft_large
from bench.anchors import deforum_raft
from test_hybrid import texture
from engine.flow import estimate_flow
from engine.raft import raft_flow

checkpoints = pathlib.Path(torch.hub.get_dir()) / "checkpoints"
checkpoints.mkdir(parents=True)
torch.manual_seed(0)
torch.save(raft_large(weights=None).state_dict(), checkpoints / pathlib.Path(Raft_Large_Weights.DEFAULT.url).name)
before = texture(3, size=128)
after = np.roll(before, (2, 3), axis=(0, 1))
theirs = deforum_raft()().predict(before, after)
ours, by_name = raft_flow(before, after), estimate_flow(before, after, "RAFT")
print(json.dumps({
    "shape": list(ours.shape),
    "max_difference": float(np.abs(ours - theirs).max()),
    "by_name": float(np.abs(by_name - theirs).max()),
    "spread": float(theirs.std()),
}))
"""


def with_torchvision(code: str, tmp_path: Path) -> dict:
    assert TORCHVISION.is_dir(), "torchvision's Python for this test is unpacked by make setup"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TORCHVISION), str(ROOT), str(ROOT / "tests")]),
        "TORCH_HOME": str(tmp_path / "torch"),
    }
    done = subprocess.run(
        [sys.executable, "-c", BOOT + code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_raft_measures_what_deforums_raft_class_measures(tmp_path):
    result = with_torchvision(COMPARE, tmp_path)
    assert result["shape"] == [128, 128, 2]
    assert result["spread"] > 0  # a flow field, not zeros
    assert result["max_difference"] <= 1e-5 and result["by_name"] <= 1e-5


RENDER = """
import json, pathlib, torch
from torchvision.models.optical_flow import Raft_Large_Weights, raft_large
from test_flow_cadence import settings_for
from engine.render import render

checkpoints = pathlib.Path(torch.hub.get_dir()) / "checkpoints"
checkpoints.mkdir(parents=True)
torch.save(raft_large(weights=None).state_dict(), checkpoints / pathlib.Path(Raft_Large_Weights.DEFAULT.url).name)
tmp = pathlib.Path(TMP)
settings = settings_for(tmp, size=128, frames=4, optical_flow_cadence="RAFT", optical_flow_redo_generation="RAFT")
result = render(settings)
print(json.dumps({"frames": [str(path) for path in result.frames]}))
"""


def test_a_render_with_raft_cadence_and_redo_writes_every_frame(tmp_path):
    result = with_torchvision(RENDER.replace("TMP", repr(str(tmp_path))), tmp_path)
    assert len(result["frames"]) == 4 and all(Path(frame).is_file() for frame in result["frames"])


@pytest.fixture
def no_torchvision(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision raises ImportError
    raft.raft_model.cache_clear()
    yield
    raft.raft_model.cache_clear()


@pytest.mark.parametrize(
    ("coherence", "field"),
    [
        ({"optical_flow_cadence": "RAFT"}, "coherence.optical_flow_cadence"),
        ({"optical_flow_redo_generation": "RAFT"}, "coherence.optical_flow_redo_generation"),
    ],
)
def test_raft_without_torchvision_stops_before_frame_0_naming_the_field(tmp_path, no_torchvision, coherence, field):
    with pytest.raises(DriftwaveError, match="RAFT needs torchvision") as caught:
        render(settings_for(tmp_path, size=128, frames=3, **coherence))
    assert caught.value.field == field and "DIS Medium" in caught.value.hint
    assert not list((tmp_path / "out").rglob("*.png"))


def test_raft_refuses_pictures_smaller_than_its_pyramid(tmp_path):
    with pytest.raises(DriftwaveError, match="at least 128×128") as caught:
        render(settings_for(tmp_path, size=64, frames=3, optical_flow_cadence="RAFT"))
    assert caught.value.field == "coherence.optical_flow_cadence"
