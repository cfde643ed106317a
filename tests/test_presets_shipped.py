"""Every preset shipped in presets/ loads, validates, compiles and renders (preview backend)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.backends import load_backend
from engine.errors import collecting_notices
from engine.plan import compile_plan
from engine.presets import load_preset
from engine.render import render
from engine.settings import ModelSettings

PRESETS = sorted((Path(__file__).resolve().parent.parent / "presets").glob("*.toml"))


def test_the_demo_and_at_least_three_more_presets_ship():
    names = {path.stem for path in PRESETS}
    assert {"demo", "zoom_tunnel", "slow_pan", "interpolation"} <= names


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_preset_compiles_and_renders(path, tmp_path):
    with collecting_notices():
        preset = load_preset(path)
        plan = compile_plan(preset.settings)
        assert plan.prompts is not None and plan.prompts.keys
        small = load_preset(path, ["backend=preview", "W=64", "H=64", "max_frames=6", f"outdir={tmp_path}"])
        result = render(small.settings, backend=load_backend(ModelSettings(backend="preview")))
    assert result.frames and result.frames[0].exists()
