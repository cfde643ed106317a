"""Every preset shipped in presets/ loads, validates and compiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import collecting_notices
from engine.plan import compile_plan
from engine.presets import load_preset

PRESETS = sorted((Path(__file__).resolve().parent.parent / "presets").glob("*.toml"))


def test_there_is_a_demo_preset():
    assert any(path.name == "demo.toml" for path in PRESETS)


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_preset_compiles(path):
    with collecting_notices():
        preset = load_preset(path)
        plan = compile_plan(preset.settings)
    assert plan.prompts is not None and plan.prompts.keys
    assert preset.settings.animation.max_frames == len(plan.values["motion.zoom"])
