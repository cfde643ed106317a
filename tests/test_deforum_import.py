"""Deforum import: every key mapped or named, schedules kept in hold mode, prompts carried over."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from engine.deforum import HANDLED, RENAMED, SWITCHED, import_deforum
from engine.errors import SettingsError, collecting_notices
from engine.plan import compile_plan
from engine.presets import load_preset, save_preset
from engine.settings import FIELDS

DATA = Path(__file__).parent / "data"
FILES = ["deforum_a1111_settings.txt", "deforum_notebook_settings.txt"]


@pytest.mark.parametrize("name", FILES)
def test_every_key_is_mapped_or_named_in_a_warning(name):
    data = json.loads((DATA / name).read_text())
    result = import_deforum(DATA / name)
    named = set(re.findall(r"[A-Za-z_][\w]*", " ".join(result.warnings)))
    unaccounted = []
    for key in data:
        target = RENAMED.get(key, key)
        if key in SWITCHED:
            continue  # used when its switch is on, else the default stays (Deforum ignores it too)
        if re.match(r"cn_\d+_", key):
            continue  # a ControlNet unit's: a [[controlnet]] entry when enabled, unused (as in Deforum) when not
        shown = re.sub(r"^cn_\d+_", "cn_N_", key)
        if target in FIELDS or key in HANDLED or key.replace("hybrid_video_", "hybrid_") in FIELDS or shown in named:
            continue
        unaccounted.append(key)
    assert unaccounted == []


def test_a1111_file():
    result = import_deforum(DATA / "deforum_a1111_settings.txt")
    s = result.settings
    assert result.kind == "A1111 extension"
    assert s.animation.blend == "hold" and s.prompting.prompt_blend_frames == 0
    assert (s.image.W, s.image.H, s.animation.max_frames, s.animation.fps) == (640, 384, 96, 24)
    assert s.sampling.sampler == "dpmpp_2m_karras"
    assert s.sampling.enable_sampler_scheduling
    assert s.sampling.sampler_schedule == '0: ("euler_a"), 48: ("dpmpp_2m_karras")'
    assert s.sampling.ddim_eta == "0:(0)"  # its switch was off in the file
    assert s.batch.seed_schedule == '0:(seed), 1:(-1), "max_f-2":(-1), "max_f-1":(seed)'
    assert s.batch.batch_name == "Deforum"
    assert s.prompting.scene_prefix == "masterpiece, " and s.prompting.negative_prompt == "blurry, lowres"
    assert s.video.soundtrack == "audio" and s.audio.file == "track.mp3"
    assert s.coherence.diffusion_cadence == 3
    units = [(unit.module, unit.model) for unit in s.controlnet]
    hub = "lllyasviel/control_v11p_sd15_"
    assert units == [("canny", f"{hub}canny"), ("lineart", f"{hub}lineart")]
    assert any("v1-5-pruned-emaonly.safetensors" in w for w in result.warnings)


def test_a1111_schedules_render_as_deforum_did():
    settings = import_deforum(DATA / "deforum_a1111_settings.txt").settings
    with collecting_notices():
        plan = compile_plan(settings.model_copy(update={"sampling": settings.sampling.model_copy(update={"seed": 42})}))
    strength = plan.values["motion.strength_schedule"]
    assert strength[45] == pytest.approx(0.42500000000000004, abs=0)  # np.interp's formula, as pandas
    assert plan.values["motion.translation_x"].tolist() == [0.0] * 41 + [2.0] * 55  # commas inside where()
    seeds = plan.values["batch.seed_schedule"]
    assert seeds[0] == 42 and seeds[1] == -1 and seeds[94] == 42 and seeds[95] == 42  # max_f = 95
    prompts = plan.prompts
    assert [key.position for key in prompts.keys] == [0, 48, 85]  # "max_f-10" with max_f = 95
    assert prompts.at(10).as_json() == {
        "positive": [["masterpiece, a lighthouse on a cliff, stormy sea, (dramatic lighting:1.3)", 1.0]],
        "negative": [["people", 1.0], ["blurry, lowres", 1.0]],
        "loras": [],
    }
    assert prompts.at(47).as_json()["positive"][0][1] == 1.0  # no cross-fade: Deforum switches at the key


def test_notebook_file():
    result = import_deforum(DATA / "deforum_notebook_settings.txt")
    s = result.settings
    assert result.kind == "notebook"
    assert s.animation.animation_mode == "3D" and s.animation.border == "wrap"
    assert s.sampling.sampler == "dpmpp_2m" and any("dpm_fast" in w for w in result.warnings)
    assert s.sampling.scale == "9"
    assert (s.depth.fov_schedule, s.depth.near_schedule, s.depth.far_schedule) == ("40", "200", "10000")
    assert s.coherence.color_coherence == "LAB" and s.coherence.diffusion_cadence == 1
    assert s.hybrid.hybrid_flow_method == "Farneback" and s.hybrid.hybrid_composite == "None"
    assert s.guidance.clip_name == "openai/clip-vit-large-patch14"
    assert s.guidance.grad_inject_timing == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert s.batch.outdir == "outputs"  # the Colab path of the source machine is not used
    assert s.prompts["30"] == "eggs:`cos(6.28*t/10)`, bacon:`-cos(6.28*t/10)`"


def test_still_batch_prompts_become_still_prompts():
    from engine.deforum import import_deforum_data

    data = {"W": 512, "seed": 1, "prompts": {"a lake": "00000", "a portrait": "00001"}}
    assert import_deforum_data(data).settings.prompting.still_prompts == ["a lake", "a portrait"]


def test_v07_separate_negative_prompts_merge_into_neg():
    from engine.deforum import import_deforum_data

    data = {"max_frames": 30, "cond_prompts": {"0": "a lake", "10": "a city"}, "uncond_prompts": {"0": "mountain"}}
    assert import_deforum_data(data).settings.prompts == {"0": "a lake --neg mountain", "10": "a city --neg mountain"}


def test_values_driftwave_cannot_take_fall_back_with_a_warning():
    from engine.deforum import import_deforum_data

    result = import_deforum_data({"max_frames": 10, "mask_overlay_blur": 500, "seed": 3})
    assert result.settings.init.mask_overlay_blur == 4
    assert any("mask_overlay_blur = 500 cannot be used" in w for w in result.warnings)


def test_imported_preset_round_trips(tmp_path: Path):
    result = import_deforum(DATA / "deforum_a1111_settings.txt")
    path = tmp_path / "imported.toml"
    save_preset(result.settings, path, include=result.mapped, header="imported")
    loaded = load_preset(path).settings
    assert loaded == result.settings
    text = path.read_text()
    assert 'blend = "hold"' in text and "translation_x" in text


def test_imported_hold_curves_equal_the_preset_curves(tmp_path: Path):
    result = import_deforum(DATA / "deforum_notebook_settings.txt")
    path = tmp_path / "nb.toml"
    save_preset(result.settings, path, include=result.mapped)
    with collecting_notices():
        first = compile_plan(result.settings).values
        second = compile_plan(load_preset(path).settings).values
    for name, curve in first.items():
        np.testing.assert_array_equal(curve, second[name])


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "invalid JSON"), ('["a"]', "does not look like Deforum"), ('{"hello": 1}', "does not look like")],
)
def test_not_a_deforum_file(tmp_path: Path, content, message):
    path = tmp_path / "x.txt"
    path.write_text(content)
    with pytest.raises(SettingsError, match=message):
        import_deforum(path)


def test_missing_file(tmp_path: Path):
    with pytest.raises(SettingsError, match="does not exist"):
        import_deforum(tmp_path / "nope.txt")
