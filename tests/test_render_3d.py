"""3D mode through the render loop: depth, cadence, resume, and what is refused before frame 0."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from runs import same_frames, whole_and_resumed
from tiny_depth import tiny_depth_anything

from engine.backends import load_backend
from engine.errors import DriftwaveError, collecting_notices
from engine.presets import settings_from_data
from engine.render import render
from engine.settings import ModelSettings


@pytest.fixture(scope="module")
def preview():
    return load_backend(ModelSettings(backend="preview"))


@pytest.fixture(scope="module")
def depth_model(tmp_path_factory) -> str:
    return tiny_depth_anything(tmp_path_factory.mktemp("depth"))


def settings_3d(tmp_path: Path, outdir: str = "out", **groups):
    data = {
        "animation": {"animation_mode": "3D", "max_frames": 8},
        "image": {"W": 128, "H": 64},
        "sampling": {"seed": 5},
        "batch": {"outdir": str(tmp_path / outdir)},
        "prompts": {"0": "a canyon at dawn"},
        "model": {"backend": "preview"},
        "motion": {"translation_z": "0:(4)", "rotation_3d_y": "0:(1)", "noise_schedule": "0:(0.02)"},
        "depth": {"depth_model": "flat"},
    }
    for group, values in groups.items():
        data[group] = {**data.get(group, {}), **values}
    with collecting_notices():
        return settings_from_data(data)


def frames(result) -> list[np.ndarray]:
    return [cv2.imread(str(path), cv2.IMREAD_UNCHANGED) for path in result.frames]


def test_flat_3d_flies_and_near_far_do_not_change_the_picture(tmp_path, preview):
    first = render(settings_3d(tmp_path, "a"), backend=preview)
    other = render(
        settings_3d(tmp_path, "b", depth={"depth_model": "flat", "near_schedule": "0:(1)", "far_schedule": "0:(50)"}),
        backend=preview,
    )
    a, b = frames(first), frames(other)
    assert len(a) == 8 and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert np.abs(a[-1].astype(float) - a[0].astype(float)).mean() > 5  # it moved


@pytest.mark.parametrize(
    ("depth", "field", "words"),
    [
        ({"fov_schedule": "0:(70), 5:(180)"}, "depth.fov_schedule", "180 degrees at frame 5"),
        ({"fov_schedule": "0:(0)"}, "depth.fov_schedule", "0 degrees at frame 0"),
        ({"near_schedule": "0:(300)", "far_schedule": "0:(200)"}, "depth.near_schedule", "not before the far plane"),
    ],
)
def test_a_bad_camera_is_refused_before_the_first_frame(tmp_path, preview, depth, field, words):
    with pytest.raises(DriftwaveError, match=words) as caught:
        render(settings_3d(tmp_path, depth=depth), backend=preview)
    assert caught.value.field == field
    assert not (tmp_path / "out").exists()  # no run folder for a run that cannot start


def test_an_unloadable_depth_model_stops_before_the_first_frame_and_names_flat(tmp_path, preview):
    with pytest.raises(DriftwaveError) as caught:
        render(settings_3d(tmp_path, depth={"depth_model": str(tmp_path / "no-such-model")}), backend=preview)
    assert "no-such-model" in str(caught.value) and "flat" in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_use_depth_warping_off_needs_no_model(tmp_path, preview):
    settings = settings_3d(tmp_path, depth={"use_depth_warping": False, "depth_model": str(tmp_path / "none")})
    assert len(render(settings, backend=preview).frames) == 8


def test_a_depth_model_gives_parallax_and_its_maps_are_saved(tmp_path, preview, depth_model):
    depth = {"depth_model": depth_model, "midas_weight": 1.0, "save_depth_maps": True}
    modelled = render(settings_3d(tmp_path, "model", depth=depth), backend=preview)
    flat = render(settings_3d(tmp_path, "flat"), backend=preview)
    assert any(not np.array_equal(a, b) for a, b in zip(frames(modelled), frames(flat), strict=True))
    maps = sorted((modelled.folder / "depth").glob("*.png"))
    assert len(maps) == 7  # one per warp: frames 1..7
    saved = cv2.imread(str(maps[0]), cv2.IMREAD_UNCHANGED)
    assert saved.dtype == np.uint16 and saved.shape == (64, 128)


def test_3d_resume_with_cadence_and_depth_reproduces_the_run(tmp_path, preview, depth_model):
    def settings(outdir):
        return settings_3d(
            tmp_path,
            outdir,
            animation={"max_frames": 10},
            coherence={"diffusion_cadence": 2},
            depth={"depth_model": depth_model, "midas_weight": 0.5},
        )

    whole, resumed = whole_and_resumed(settings, preview, stop_after=4)
    assert same_frames(whole, resumed)
