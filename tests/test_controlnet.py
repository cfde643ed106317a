"""ControlNet units ([[controlnet]], Deforum's cn_1 … cn_5) with tiny random ControlNets saved as
diffusers folders and loaded through the users' path: what a unit changes, its weight and step
range, several units as diffusers' MultiControlNetModel sums them, the control modes as its guess
mode scales them, loopback, the sources and preprocessors, bad input, and the A1111 import."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import DATA
from test_hybrid import texture
from tiny_controlnet import a1111_state_dict, save_tiny_controlnet

from engine.backends import load_backend
from engine.backends.base import ModelLoadError
from engine.backends.controlnets import Steering, load_controlnet
from engine.controlnet import ControlImages, ControlInput
from engine.deforum import import_deforum_data
from engine.errors import DriftwaveError, collecting_notices
from engine.frame_params import ControlValues
from engine.images import from_array, write_image
from engine.plan import compile_plan, compile_run
from engine.presets import load_preset, save_preset, settings_from_data
from engine.render import render
from engine.settings import ControlNetUnit, ModelSettings

SIZE = 64


@pytest.fixture(scope="module")
def tiny():
    return load_backend(ModelSettings(backend="tiny"))


@pytest.fixture(scope="module")
def nets(tmp_path_factory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("controlnets")
    return save_tiny_controlnet(root / "first", 1), save_tiny_controlnet(root / "second", 2)


@pytest.fixture(scope="module")
def control_image(tmp_path_factory) -> str:
    return str(write_image(from_array(texture(4, size=SIZE)), tmp_path_factory.mktemp("control") / "edges.png"))


def settings_for(tmp_path: Path, units: list[dict], outdir: str = "out", **groups):
    data = {
        "animation": {"animation_mode": "2D", "max_frames": 3},
        "image": {"W": SIZE, "H": SIZE},
        "sampling": {"seed": 3, "steps": 4, "scale": "0:(5)"},
        "batch": {"outdir": str(tmp_path / outdir)},
        "prompts": {"0": "a lighthouse"},
        "model": {"backend": "tiny"},
        "coherence": {"diffusion_cadence": 1, "color_coherence": "None"},
        "video": {"skip_video_creation": True},
        "controlnet": units,
        **groups,
    }
    with collecting_notices():
        return settings_from_data(data)


def frames(tmp_path, tiny, units, outdir, **groups) -> list[np.ndarray]:
    result = render(settings_for(tmp_path, units, outdir, **groups), backend=tiny)
    return [cv2.imread(str(path)).astype(int) for path in result.frames]


def test_a_unit_at_weight_1_changes_the_frames_and_at_weight_0_is_no_unit(tmp_path, tiny, nets, control_image):
    plain = frames(tmp_path, tiny, [], "plain")
    unit = {"model": nets[0], "vid_path": control_image}
    steered = frames(tmp_path, tiny, [unit], "steered")
    still = frames(tmp_path, tiny, [unit | {"weight": "0:(0)"}], "still")
    assert all(np.array_equal(a, b) for a, b in zip(plain, still, strict=True))
    assert all(np.abs(a - b).mean() > 2 for a, b in zip(plain, steered, strict=True))


def test_guidance_start_and_end_gate_the_steps(tmp_path, tiny, nets, control_image):
    unit = {"model": nets[0], "vid_path": control_image}
    plain, full = frames(tmp_path, tiny, [], "plain"), frames(tmp_path, tiny, [unit], "full")
    never = frames(tmp_path, tiny, [unit | {"guidance_end": "0:(0)"}], "never")
    late = frames(tmp_path, tiny, [unit | {"guidance_start": "0:(0.5)"}], "late")
    assert np.array_equal(never[0], plain[0])
    assert not np.array_equal(late[0], plain[0]) and not np.array_equal(late[0], full[0])
    values = ControlValues(weight=1.0, start=0.5, end=0.75)
    control = ControlInput("m", torch.zeros(1, 3, 8, 8), values, "Balanced", "controlnet.1.model")
    assert [control.active(step, 8) for step in range(8)] == [False] * 4 + [True] * 2 + [False] * 2


def unet_inputs(tiny):
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 4, SIZE // 8, SIZE // 8, generator=generator)
    conditioning = torch.randn(2, 77, tiny.unet.config.cross_attention_dim, generator=generator)
    images = [torch.rand(1, 3, SIZE, SIZE, generator=generator) for _ in range(2)]
    return sample, torch.tensor(500), conditioning, images


def cache_the_config_diffusers_picks(monkeypatch, tmp_path: Path, folder: str) -> None:
    """The hub's cache as loading lllyasviel/control_v11p_sd15_canny's config once leaves it, with
    ``folder``'s config.json in it (the tiny architecture, where the real file has SD 1.5's)."""
    import huggingface_hub.constants

    revision = "0" * 40
    repo = tmp_path / "hub" / "models--lllyasviel--control_v11p_sd15_canny"
    (repo / "snapshots" / revision).mkdir(parents=True)
    (repo / "snapshots" / revision / "config.json").write_text((Path(folder) / "config.json").read_text())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


def steer(net, tiny):
    sample, timestep, conditioning, images = unet_inputs(tiny)
    control = images[0].expand(2, -1, -1, -1)
    return net(sample, timestep, encoder_hidden_states=conditioning, controlnet_cond=control, return_dict=False)


def test_a_controlnet_in_one_file_loads_as_its_folder_does(tmp_path, monkeypatch, tiny, nets, control_image):
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache_the_config_diffusers_picks(monkeypatch, tmp_path, nets[0])
    folder = ControlNetModel.from_pretrained(nets[0])
    a1111_file = tmp_path / "models" / "ControlNet" / "control_tiny_canny.safetensors"  # A1111's layout and names
    a1111_file.parent.mkdir(parents=True)
    save_file(a1111_state_dict(folder), a1111_file)
    diffusers_file = Path(nets[0]) / "diffusion_pytorch_model.safetensors"  # beside its config.json
    expected = steer(folder, tiny)
    for file in (a1111_file, diffusers_file):
        net = load_controlnet(str(file), torch.float32, "controlnet.1.model")
        for a, b in zip([*steer(net, tiny)[0], steer(net, tiny)[1]], [*expected[0], expected[1]], strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    by_folder = frames(tmp_path, tiny, [{"model": nets[0], "vid_path": control_image}], "folder")
    by_file = frames(tmp_path, tiny, [{"model": str(a1111_file), "vid_path": control_image}], "file")
    assert all(np.array_equal(a, b) for a, b in zip(by_folder, by_file, strict=True))


def test_a_controlnet_file_without_its_config_stops_naming_the_unit(tmp_path, monkeypatch, tiny, nets):
    import huggingface_hub.constants
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    file = tmp_path / "control_tiny_canny.safetensors"
    save_file(a1111_state_dict(ControlNetModel.from_pretrained(nets[0])), file)
    with pytest.raises(ModelLoadError, match="needs its architecture's config") as error:
        render(settings_for(tmp_path, [{"model": str(file), "module": "none"}]), backend=tiny)
    assert error.value.field == "controlnet.1.model"
    assert "config.json" in error.value.hint
    assert not list((tmp_path / "out").rglob("*.png"))


def test_two_units_sum_as_diffusers_multicontrolnet_does(tiny, nets):
    from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

    tiny.load_controlnets({nets[0]: "controlnet.1.model", nets[1]: "controlnet.2.model"})
    first, second = tiny.controlnets[nets[0]], tiny.controlnets[nets[1]]
    sample, timestep, conditioning, images = unet_inputs(tiny)
    units = [
        (net, image, ControlInput(name, image, ControlValues(weight, 0.0, 1.0), "Balanced", "f"))
        for net, image, name, weight in ((first, images[0], nets[0], 0.8), (second, images[1], nets[1], 0.4))
    ]
    ours = Steering(units).residuals(sample, timestep, conditioning, None, [False, True], (0, 4))
    theirs = MultiControlNetModel([first, second])(
        sample,
        timestep,
        encoder_hidden_states=conditioning,
        controlnet_cond=[image.expand(2, -1, -1, -1) for image in images],
        conditioning_scale=[0.8, 0.4],
        return_dict=False,
    )
    for a, b in zip([*ours[0], ours[1]], [*theirs[0], theirs[1]], strict=True):
        torch.testing.assert_close(a, b)


def test_the_control_modes_scale_as_diffusers_guess_mode(tiny, nets):
    tiny.load_controlnets({nets[0]: "controlnet.1.model"})
    net = tiny.controlnets[nets[0]]
    sample, timestep, conditioning, images = unet_inputs(tiny)

    def ours(mode, rows):
        control = ControlInput(nets[0], images[0], ControlValues(0.7, 0.0, 1.0), mode, "f")
        return Steering([(net, images[0], control)]).residuals(sample, timestep, conditioning, None, rows, (0, 4))

    guessed = net(
        sample,
        timestep,
        encoder_hidden_states=conditioning,
        controlnet_cond=images[0].expand(2, -1, -1, -1),
        conditioning_scale=0.7,
        guess_mode=True,
        return_dict=False,
    )
    soft = ours("My prompt is more important", [False, True])
    for a, b in zip([*soft[0], soft[1]], [*guessed[0], guessed[1]], strict=True):
        torch.testing.assert_close(a, b)
    prompt_only = ours("ControlNet is more important", [False, True])  # guess mode: the prompt's row only
    for a, b in zip([*prompt_only[0], prompt_only[1]], [*guessed[0], guessed[1]], strict=True):
        assert torch.count_nonzero(a[0]) == 0
        torch.testing.assert_close(a[1], b[1])
    assert ours("ControlNet is more important", [False]) == (None, None)  # the unconditional pass alone


def test_loopback_controls_by_the_frame_itself_and_sits_out_a_first_frame_without_init(tmp_path, tiny, nets):
    plain = frames(tmp_path, tiny, [], "plain")
    looped = frames(tmp_path, tiny, [{"model": nets[0], "loopback_mode": True}], "looped")
    assert np.array_equal(looped[0], plain[0])  # nothing to loop back at frame 0 without an init image
    assert np.abs(looped[1] - plain[1]).mean() > 2


def test_a_control_video_is_extracted_once_and_its_last_frame_held(tmp_path, tiny, nets):
    from media import make_video

    clip = make_video(tmp_path / "control.mp4", [texture(n, size=SIZE) for n in range(2)])
    units = [{"model": nets[0], "vid_path": str(clip)}]
    settings = settings_for(tmp_path, units, animation={"animation_mode": "2D", "max_frames": 4})
    with collecting_notices() as notices:
        result = render(settings, backend=tiny)
    assert len(result.frames) == 4
    extracted = sorted((result.folder.parent / "controlnet_1_inputframes").glob("*.png"))
    assert len(extracted) == 2
    assert any("control video has 2 frames: its last one is held from frame 2 on" in note for note in notices)


@pytest.mark.parametrize(
    ("module", "check"),
    [
        ("canny", lambda made: set(np.unique(made)) <= {0, 255} and made.max() == 255),
        ("invert", lambda made: np.array_equal(made, 255 - texture(5, size=SIZE))),
        ("tile_resample", lambda made: made.std() > 0),
        ("lineart_standard", lambda made: 0 < (made > 64).mean() < 0.5),  # lines, not a fill
    ],
)
def test_the_preprocessors_without_weights(tmp_path, module, check):
    settings = settings_for(tmp_path, [{"model": "m", "module": module, "threshold_a": 2, "pixel_perfect": True}])
    images = ControlImages(settings, tmp_path, "cpu")
    picture = from_array(texture(5, size=SIZE))
    (control,) = images.inputs(compile_run(settings).frame(1), picture)
    made = np.round(control.image[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    assert made.shape == (SIZE, SIZE, 3) and check(made)


def test_a_depth_unit_is_the_depth_model_white_near(tmp_path):
    from tiny_depth import tiny_depth_anything

    from engine.depth import load_depth_model

    depth = load_depth_model(tiny_depth_anything(tmp_path / "depth"), "cpu")
    settings = settings_for(tmp_path, [{"model": "m", "module": "depth"}])
    (control,) = ControlImages(settings, tmp_path, "cpu", depth).inputs(
        compile_run(settings).frame(1), from_array(texture(5, size=SIZE))
    )
    assert control.image.shape == (1, 3, SIZE, SIZE)
    assert control.image.min() == 0 and control.image.max() == 1  # normalised, near white


@pytest.mark.parametrize(
    ("unit", "field", "message"),
    [
        ({"model": ""}, "controlnet.1.model", "has no model"),
        ({"model": "m", "module": "reference_only"}, "controlnet.1.module", "not a preprocessor"),
        ({"model": "m", "module": "sketchy"}, "controlnet.1.module", "is unknown"),
        ({"model": "m", "module": "openpose_full"}, "controlnet.1.module", "needs controlnet-aux"),
        ({"model": "m", "vid_path": "/nowhere/clip.mp4"}, "controlnet.1.vid_path", "does not exist"),
        ({"model": "/nowhere/controlnet"}, "controlnet.1.model", "does not exist"),
        ({"model": "not-a-hub/id/at-all"}, "controlnet.1.model", "does not exist"),
    ],
)
def test_bad_units_stop_before_the_first_frame_naming_the_field(tmp_path, tiny, unit, field, message):
    settings = settings_for(tmp_path, [unit])
    with pytest.raises(DriftwaveError, match=message) as error:
        render(settings, backend=tiny)
    assert error.value.field == field
    assert not list((tmp_path / "out").rglob("*.png"))  # nothing rendered


def test_skip_unloadable_renders_without_the_unit_and_says_so(tmp_path, tiny):
    units, model = [{"model": "/nowhere/controlnet"}], {"backend": "tiny", "skip_unloadable_controlnet": True}
    with collecting_notices() as notices:
        skipped = frames(tmp_path, tiny, units, "skipped", model=model)
    plain = frames(tmp_path, tiny, [], "plain")
    assert all(np.array_equal(a, b) for a, b in zip(plain, skipped, strict=True))
    assert any("rendering without controlnet.1" in note for note in notices)


def test_units_survive_a_preset_round_trip(tmp_path, nets):
    settings = settings_for(tmp_path, [{"model": nets[0], "weight": "0:(0.5)"}, {"model": nets[1], "module": "canny"}])
    save_preset(settings, tmp_path / "saved.toml")
    assert "[[controlnet]]" in (tmp_path / "saved.toml").read_text()
    assert load_preset(tmp_path / "saved.toml").settings.controlnet == settings.controlnet


def test_every_cn_key_of_the_a1111_files_imports():
    corpus = DATA / "corpus"
    files = [path for path in sorted(corpus.iterdir()) if '"cn_1_enabled": true' in path.read_text(errors="ignore")]
    assert len(files) >= 8
    for path in files:
        data = json.loads(path.read_text())
        if str(data.get("parseq_manifest", "")).startswith("http"):
            del data["parseq_manifest"]  # a Parseq URL needs the network; the units do not
        imported = import_deforum_data(data)
        enabled = [n for n in range(1, 6) if data.get(f"cn_{n}_enabled")]
        assert len(imported.settings.controlnet) == len(enabled), path.name
        for unit, number in zip(imported.settings.controlnet, enabled, strict=True):
            assert unit.module == data[f"cn_{number}_module"] and unit.control_mode == data[f"cn_{number}_control_mode"]
            assert unit.weight == data[f"cn_{number}_weight"] and unit.guidance_end == data[f"cn_{number}_guidance_end"]
        assert not any(w.startswith(("not supported", "switched on")) and "cn_" in w for w in imported.warnings)


def test_parseqs_cn_keys_set_the_units_schedules_as_deforums_parseq_adapter_does():
    from bench.anchors import deforum_parseq_controlnet_series

    data = json.loads((DATA / "corpus" / "Encodex-Ai__stable-diffusion-webui__deforum_settings.txt").read_text())
    data["cn_2_enabled"] = False  # cn_1, cn_3, cn_4 on: they import as controlnet.1, .2, .3
    frames = 48
    rendered = [
        {
            "frame": frame,
            "strength": 0.6,
            "cn_1_weight": 0.5 + 0.5 * np.sin(frame / 5),
            "cn_2_weight": 0.25,  # a unit the settings leave off: unused, as in Deforum
            "cn_3_guidance_end": 1 - frame / 96,
            "cn_4_guidance_start": 0.1 * (frame % 4),
        }
        for frame in range(frames)
    ]
    document = {"options": {"output_fps": 24}, "rendered_frames": rendered}
    imported = import_deforum_data({**data, "parseq_manifest": json.dumps(document), "parseq_use_deltas": True})
    units = imported.settings.controlnet
    assert imported.settings.animation.max_frames == frames and len(units) == 3
    deforum_series = deforum_parseq_controlnet_series(
        {key: value for key, value in data.items() if key.startswith("cn_")}, document, frames
    )
    with collecting_notices():
        values = compile_plan(imported.settings).values
    for position, number in enumerate((1, 3, 4), start=1):
        for name in ("weight", "guidance_start", "guidance_end"):
            np.testing.assert_allclose(
                values[f"controlnet.{position}.{name}"], deforum_series(f"cn_{number}_{name}"), rtol=0, atol=1e-12
            )
    assert units[0].weight != data["cn_1_weight"] and units[1].weight == data["cn_3_weight"]
    said = " ".join(imported.warnings)
    assert "controlnet.1.weight (cn_1_weight)" in said and "controlnet.3.guidance_start (cn_4_guidance_start)" in said
    assert "Parseq's cn_2_weight: those ControlNet units are not enabled" in said


def test_a1111_model_names_become_the_hubs_ids():
    data = {"animation_mode": "2D", "deforum_git_commit_id": "3224268", "cn_1_enabled": True}
    data |= {"cn_1_model": "control_v11f1e_sd15_tile_fp16 [3b860298]", "cn_1_module": "tile_resample"}
    data |= {"cn_2_enabled": True, "cn_2_model": "diff_control_sd15_temporalnet_fp16 [adc6bd97]"}
    data |= {"cn_3_enabled": False, "cn_3_model": "control_v11p_sd15_canny [d14c016b]"}
    imported = import_deforum_data(data)
    models = [unit.model for unit in imported.settings.controlnet]
    assert models == ["lllyasviel/control_v11f1e_sd15_tile", "diff_control_sd15_temporalnet"]
    assert any("controlnet.2.model" in warning and "set it to its file" in warning for warning in imported.warnings)


def test_an_sdxl_unit_steers_txt2img_and_img2img(tmp_path):
    from test_backends import prompt, request, tiny_sdxl

    from engine.backends.diffusion import DiffusionBackend

    folder = tiny_sdxl(tmp_path / "sdxl")
    backend = DiffusionBackend.load(str(folder), ModelSettings(), device="cpu", label="sdxl")
    net = save_tiny_controlnet(tmp_path / "sdxl-controlnet", 3, folder)
    backend.load_controlnets({net: "controlnet.1.model"})
    image = from_array(texture(6, size=SIZE))

    def control(weight):
        return (ControlInput(net, image, ControlValues(weight, 0.0, 1.0), "Balanced", "controlnet.1.model"),)

    for init in (None, image):
        asked = {"prompt": prompt("a lighthouse"), "init": init, "strength": 0.4 if init is not None else 0.0}
        plain = backend.generate(request(**asked))
        assert torch.equal(backend.generate(request(**asked, controls=control(0.0))), plain)
        assert (backend.generate(request(**asked, controls=control(1.0))) - plain).abs().mean() > 0.01


def test_a_live_edit_adds_a_unit_and_a_bad_unit_changes_nothing(tmp_path, tiny, nets):
    from test_live import file_source, live_settings, stepped_tones

    from engine.live import LiveSession

    source = file_source(stepped_tones(tmp_path / "steps.wav"), loop=True)
    settings = live_settings(model={"backend": "tiny"}, batch={"outdir": str(tmp_path / "out")})
    session = LiveSession(settings, tiny, source)
    try:
        session.step()
        with pytest.raises(DriftwaveError, match="is unknown") as error:
            session.edit(settings.model_copy(update={"controlnet": [ControlNetUnit(model=nets[0], module="sketchy")]}))
        assert error.value.field == "controlnet.1.module"
        session.step()
        assert session.frame_step.controls is None  # nothing changed
        session.edit(settings.model_copy(update={"controlnet": [ControlNetUnit(model=nets[0], loopback_mode=True)]}))
        session.step()
        assert session.frame_step.controls is not None and nets[0] in tiny.controlnets
    finally:
        source.close()
