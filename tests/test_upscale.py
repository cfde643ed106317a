"""Upscaling of the output (Deforum's r_upscale_* step): Real-ESRGAN's architectures read from
model files in the releases' format, checked against spandrel (the library ComfyUI and
chaiNNer load them with); tiles; the upscaled video beside the render, its sound in sync; bad
model files stop before the first frame."""

from __future__ import annotations

import sys
import types

import cv2
import numpy as np
import pytest
import soundfile
import torch
from safetensors.torch import save_file
from test_frame_interpolation import CLICK, RATE, click_time, frames_of
from test_frame_interpolation import settings_for as interpolation_settings
from test_hybrid import texture

from engine.backends import load_backend
from engine.deforum import import_deforum_data
from engine.errors import DriftwaveError, collecting_notices
from engine.esrgan import RRDBNet, SRVGGNetCompact
from engine.images import from_array, to_array
from engine.render import render
from engine.settings import ModelSettings, VideoOutputSettings
from engine.upscale import load_upscaler
from engine.video import read_frame

ARCHITECTURES = {  # small widths, the releases' layouts (RRDBNet's growth is always 32)
    "rrdb-x4": lambda: RRDBNet(4, features=8, blocks=1, growth=32),
    "rrdb-x2": lambda: RRDBNet(2, features=8, blocks=2, growth=32),
    "rrdb-x1": lambda: RRDBNet(1, features=8, blocks=1, growth=32),
    "compact-x2": lambda: SRVGGNetCompact(2, features=8, convolutions=3),
    "compact-x4": lambda: SRVGGNetCompact(4, features=8, convolutions=2),
}


def random_network(name: str) -> torch.nn.Module:
    torch.manual_seed(sorted(ARCHITECTURES).index(name))
    network = ARCHITECTURES[name]()
    for parameter in network.parameters():
        parameter.data.normal_(0, 0.1)
    return network.eval()


def release_file(network: torch.nn.Module, path, container: str = "params_ema"):
    """``network`` saved as Real-ESRGAN's releases are: ``{"params_ema": state_dict}`` in a .pth,
    or the bare state dict as .safetensors."""
    if path.suffix == ".safetensors":
        save_file({key: value.contiguous() for key, value in network.state_dict().items()}, str(path))
    else:
        torch.save({container: network.state_dict()}, path)
    return path


@pytest.fixture
def spandrel(monkeypatch):
    """spandrel, installed without its torchvision dependency (the CPU torch here has no matching
    torchvision): torchvision is imported by two architectures we never load (LaMa, RestoreFormer),
    so a module holding the three names they import stands in. Unloaded again afterwards, so the
    other tests see spandrel as unimportable and take engine.esrgan."""
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode, functional.rotate, functional.normalize = object, None, None
    transforms = types.ModuleType("torchvision.transforms")
    transforms.functional = functional
    vision = types.ModuleType("torchvision")
    vision.transforms = transforms
    before = set(sys.modules)
    for name, module in (("torchvision", vision), ("torchvision.transforms", transforms)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(sys.modules, "torchvision.transforms.functional", functional)
    import spandrel as library

    yield library
    for name in set(sys.modules) - before:
        if name.startswith("spandrel"):
            del sys.modules[name]


@pytest.fixture(scope="module")
def preview():
    return load_backend(ModelSettings(backend="preview"))


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_release_files_load_as_spandrel_loads_them(tmp_path, spandrel, name, suffix):
    network = random_network(name)
    path = release_file(network, tmp_path / f"model{suffix}")
    theirs = spandrel.ModelLoader().load_from_file(str(path))
    ours = load_upscaler(str(path), "cpu", tile=0)  # through spandrel, as users with it get
    del sys.modules["spandrel"]  # and now without it: engine.esrgan
    sys.modules["spandrel"] = None  # an import of it fails
    try:
        fallback = load_upscaler(str(path), "cpu", tile=0)
    finally:
        del sys.modules["spandrel"]
    assert type(fallback.network) is type(network) and fallback.scale == theirs.scale
    assert fallback.multiple in (1, 4 // theirs.scale)
    image = torch.rand(1, 3, 16, 20, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = theirs.model.eval()(image)
    assert expected.shape[-2:] == (16 * theirs.scale, 20 * theirs.scale)
    for upscaler in (ours, fallback):
        with torch.inference_mode():
            assert torch.allclose(upscaler._tiled(image), expected, atol=1e-6)


def test_params_container_loads_too(tmp_path):
    network = random_network("compact-x2")
    upscaler = load_upscaler(str(release_file(network, tmp_path / "m.pth", container="params")), "cpu")
    image = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert torch.allclose(upscaler._tiled(image), network(image), atol=1e-6)


def test_tiles_with_their_margin_equal_the_whole_frame(tmp_path):
    """The compact network sees 5 pixels around each (5 convolutions); tiles see 10 more."""
    path = release_file(random_network("compact-x2"), tmp_path / "m.pth")
    picture = from_array(texture(size=64)[:40, :56])
    whole = load_upscaler(str(path), "cpu", tile=0).upscale(picture, 2)
    tiled = load_upscaler(str(path), "cpu", tile=16).upscale(picture, 2)
    assert whole.shape[-2:] == (80, 112)
    assert torch.allclose(tiled, whole, atol=1e-5)


def test_odd_tiles_are_padded_to_what_the_x2_network_takes(tmp_path):
    path = release_file(random_network("rrdb-x2"), tmp_path / "m.pth")
    picture = from_array(texture(size=64)[:37, :45])
    assert load_upscaler(str(path), "cpu", tile=16).upscale(picture, 2).shape[-2:] == (74, 90)


def test_a_factor_other_than_the_models_scale_resizes_its_output_with_lanczos(tmp_path):
    path = release_file(random_network("compact-x4"), tmp_path / "m.pth")
    upscaler = load_upscaler(str(path), "cpu", tile=0)
    picture = from_array(texture(size=32))
    four = to_array(upscaler.upscale(picture, 4))
    two = to_array(upscaler.upscale(picture, 2))
    assert np.array_equal(two, cv2.resize(four, (64, 64), interpolation=cv2.INTER_LANCZOS4))


@pytest.mark.parametrize(("name", "interpolation"), [("bicubic", cv2.INTER_CUBIC), ("lanczos", cv2.INTER_LANCZOS4)])
def test_the_no_weights_upscalers_are_opencvs_resize(name, interpolation):
    picture = texture(size=48)
    upscaled = to_array(load_upscaler(name, "cpu").upscale(from_array(picture), 3))
    assert np.array_equal(upscaled, cv2.resize(picture, (144, 144), interpolation=interpolation))


def settings_for(tmp_path, audio=None, **video):
    """test_frame_interpolation's 30 frames of 64x64, upscaled instead of interpolated."""
    return interpolation_settings(tmp_path, audio, frame_interpolation_engine="None", r_upscale_video=True, **video)


def test_a_render_writes_the_upscaled_video_with_its_sound_in_sync(tmp_path, preview):
    sound = np.zeros(RATE * 4, np.float32)
    sound[int(CLICK * RATE) : int(CLICK * RATE) + 48] = 0.9
    soundfile.write(tmp_path / "click.wav", sound, RATE)
    model = release_file(random_network("compact-x2"), tmp_path / "realesr-tiny-x2.pth")
    settings = settings_for(tmp_path, tmp_path / "click.wav", r_upscale_model=str(model), r_upscale_tile=32)
    result = render(settings, backend=preview)
    video = result.folder / "video_upscaled_x2.mp4"
    assert video in result.outputs
    upscaled, plain = frames_of(video, 128), frames_of(result.video)
    assert len(upscaled) == len(plain) == 30
    assert click_time(video) == pytest.approx(click_time(result.video), abs=0.002)
    kept = sorted((result.folder / "upscaled_x2").glob("*.png"))
    assert len(kept) == 30
    expected = load_upscaler(str(model), "cpu", tile=32).upscale(from_array(read_frame(result.frames[7])), 2)
    assert np.array_equal(read_frame(kept[7]), to_array(expected))
    shrunk = cv2.resize(upscaled[7], (64, 64), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(shrunk - plain[7].astype(int)).mean() < 40  # the same picture, twice the size


def test_without_keep_imgs_only_the_video_stays(tmp_path, preview):
    result = render(settings_for(tmp_path, r_upscale_factor="x3", r_upscale_keep_imgs=False), backend=preview)
    assert len(frames_of(result.folder / "video_upscaled_x3.mp4", 192)) == 30
    assert not (result.folder / "upscaled_x3").exists()


@pytest.mark.parametrize("broken", ["missing", "not a model"])
def test_a_model_that_cannot_load_stops_before_the_first_frame(tmp_path, preview, broken):
    path = tmp_path / "model.pth"
    if broken == "not a model":
        torch.save({"params_ema": {"conv.weight": torch.zeros(3, 3, 3, 3)}}, path)
    with pytest.raises(DriftwaveError) as caught:
        render(settings_for(tmp_path, r_upscale_model=str(path)), backend=preview)
    assert caught.value.field == "video.r_upscale_model"
    assert ("does not exist" if broken == "missing" else "cannot load") in caught.value.message
    assert not list((tmp_path / "out").rglob("*.png"))


def test_deforums_ncnn_model_names_upscale_with_lanczos_and_say_so(tmp_path, preview):
    with collecting_notices() as notices:
        result = render(settings_for(tmp_path, r_upscale_model="realesr-animevideov3"), backend=preview)
    assert any("realesr-animevideov3 is realesrgan-ncnn's model" in notice for notice in notices)
    assert len(frames_of(result.folder / "video_upscaled_x2.mp4", 128)) == 30


def test_a1111_files_import_the_upscale_keys():
    data = {
        "animation_mode": "2D",
        "deforum_git_commit_id": "3224268",
        "r_upscale_video": True,
        "r_upscale_factor": "x4",
        "r_upscale_model": "realesrgan-x4plus",
        "r_upscale_keep_imgs": False,
    }
    imported = import_deforum_data(data)
    upscale = {name for name in VideoOutputSettings.model_fields if name.startswith("r_upscale")} - {"r_upscale_tile"}
    assert imported.settings.video.model_dump(include=upscale) == {
        "r_upscale_video": True,
        "r_upscale_factor": "x4",
        "r_upscale_model": "lanczos",
        "r_upscale_keep_imgs": False,
    }
    assert any("realesrgan-x4plus" in warning and "lanczos" in warning for warning in imported.warnings)
    assert not any("r_upscale" in warning and "not supported" in warning for warning in imported.warnings)
