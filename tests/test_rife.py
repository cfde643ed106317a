"""RIFE v4.6 frame interpolation: our IFNet loads a RIFE46.pkl-shaped file (``module.`` keys) and
makes the in-betweens Deforum's own code makes (``IFNet_HDv3``, ``RIFE_HDv3.Model.inference``,
``inference_video.make_inference``, its padding and 8-bit truncation), here with random weights of
the real architecture; a render writes the interpolated video with them; bad weights stop the run
before frame 0."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_frame_interpolation import settings_for
from test_hybrid import texture

from engine.errors import DriftwaveError
from engine.render import render
from engine.rife import load_rife, rife_inbetweens
from engine.video import read_frame

FIELD = "video.frame_interpolation_model"


@pytest.fixture(scope="module")
def deforum_network():
    from bench.anchors import deforum_rife

    rife = deforum_rife()
    torch.manual_seed(0)
    return rife, rife.IFNet().eval()


@pytest.fixture
def weights(tmp_path, deforum_network) -> Path:
    """The network's weights saved as the release is: a state dict of ``module.`` keys."""
    path = tmp_path / "RIFE46.pkl"
    torch.save({f"module.{key}": value for key, value in deforum_network[1].state_dict().items()}, path)
    return path


def deforums_inbetweens(rife, network, first: np.ndarray, second: np.ndarray, amount: int) -> list[np.ndarray]:
    """inference_video's steps: to tensors, padded to 128, make_inference, bytes cut back."""
    height, width = first.shape[:2]
    padding = (0, ((width - 1) // 128 + 1) * 128 - width, 0, ((height - 1) // 128 + 1) * 128 - height)
    before, after = (
        F.pad(torch.from_numpy(np.transpose(picture, (2, 0, 1))).unsqueeze(0).float() / 255.0, padding)
        for picture in (first, second)
    )
    with torch.no_grad():
        output = rife.make_inference(rife.model(network), before, after, amount - 1, 1.0)
    return [(middle[0] * 255.0).byte().cpu().numpy().transpose(1, 2, 0)[:height, :width] for middle in output]


@pytest.mark.parametrize("amount", [2, 4])
def test_our_rife_makes_the_inbetweens_deforums_code_makes(deforum_network, weights, amount):
    rife, network = deforum_network
    first = texture(5, size=160)[:96, :144].copy()  # not a multiple of 128: padded, then cut back
    second = np.roll(first, (3, 5), axis=(0, 1))
    theirs = deforums_inbetweens(rife, network, first, second, amount)
    ours = rife_inbetweens(load_rife(str(weights), "cpu", FIELD), first, second, amount)
    assert len(ours) == amount - 1
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == first.shape and np.array_equal(a, b)
    assert not np.array_equal(ours[0], first) and not np.array_equal(ours[0], second)


def test_a_render_writes_the_rife_video_with_n_frames_per_frame(tmp_path, weights):
    video = {"frame_interpolation_engine": "RIFE v4.6", "frame_interpolation_model": str(weights)}
    result = render(settings_for(tmp_path, None, frame_interpolation_keep_imgs=True, **video))
    interpolated = result.folder / "video_x2.mp4"
    assert imageio_ffmpeg.count_frames_and_secs(str(interpolated))[0] == 60
    kept = sorted((result.folder / "interpolated_x2").glob("*.png"))
    assert len(kept) == 60
    first, second = read_frame(result.frames[0]), read_frame(result.frames[1])
    assert np.array_equal(read_frame(kept[0]), first) and np.array_equal(read_frame(kept[2]), second)
    by_hand = rife_inbetweens(load_rife(str(weights), "cpu", FIELD), first, second, 2)[0]
    assert np.array_equal(read_frame(kept[1]), by_hand)


@pytest.mark.parametrize(("contents", "message"), [(None, "needs its weights file"), (b"not a model", "is not RIFE")])
def test_bad_rife_weights_stop_before_frame_0_naming_the_field(tmp_path, contents, message):
    path = tmp_path / "RIFE46.pkl"
    if contents is not None:
        path.write_bytes(contents)
    settings = settings_for(tmp_path, None, frame_interpolation_engine="RIFE v4.6", frame_interpolation_model=str(path))
    with pytest.raises(DriftwaveError, match=message) as caught:
        render(settings)
    assert caught.value.field == FIELD and "RIFE46.pkl" in caught.value.hint
    assert not list((tmp_path / "out").rglob("*.png"))


def test_a1111_files_keep_rife():
    from engine.deforum import import_deforum_data

    imported = import_deforum_data(
        {"animation_mode": "2D", "deforum_git_commit_id": "3224268", "frame_interpolation_engine": "RIFE v4.6"}
    )
    assert imported.settings.video.frame_interpolation_engine == "RIFE v4.6"
    assert not any("needs its model" in warning for warning in imported.warnings)
