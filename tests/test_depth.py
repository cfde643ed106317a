"""Depth maps: tiny random-weight checkpoints built here, loaded the way users load theirs."""

from __future__ import annotations

import sys

import cv2
import pytest
import torch
from tiny_depth import save_checkpoint, tiny_depth_anything

from engine.depth import DEPTH_RANGE, depth_from_disparity, depth_map, load_depth_model, save_depth_map
from engine.errors import DriftwaveError

HEIGHT, WIDTH = 48, 64


@pytest.fixture(scope="module")
def depth_anything(tmp_path_factory) -> str:
    return tiny_depth_anything(tmp_path_factory.mktemp("depth-anything"))


@pytest.fixture(scope="module")
def dpt(tmp_path_factory) -> str:
    from transformers import DPTConfig, DPTForDepthEstimation

    config = DPTConfig(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, image_size=32,
        patch_size=16, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 8, 16, 16], fusion_hidden_size=16,
    )  # fmt: skip
    torch.manual_seed(0)
    return save_checkpoint(DPTForDepthEstimation(config), tmp_path_factory.mktemp("dpt"), 32, False, 1)


def _image() -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(1, 3, HEIGHT, WIDTH, generator=generator)


def test_disparity_maps_nearest_and_farthest_to_the_ends_of_the_range() -> None:
    disparity = torch.tensor([[0.0, 1.0], [2.0, 4.0]])
    depth = depth_from_disparity(disparity, 1.0)
    assert depth[1, 1].item() == pytest.approx(1 - DEPTH_RANGE)  # nearest
    assert depth[0, 0].item() == pytest.approx(1 + DEPTH_RANGE)  # farthest
    assert depth[0, 1].item() == pytest.approx(1 + DEPTH_RANGE * 0.5)
    assert depth.dtype == torch.float32


def test_disparity_weight_zero_negative_and_constant() -> None:
    disparity = torch.tensor([[0.0, 1.0], [2.0, 4.0]])
    assert torch.equal(depth_from_disparity(disparity, 0.0), torch.ones(2, 2))
    inverted = depth_from_disparity(disparity, -0.5)
    assert inverted[1, 1].item() == pytest.approx(1 + 0.5 * DEPTH_RANGE)
    assert torch.allclose(inverted - 1, -(depth_from_disparity(disparity, 0.5) - 1))
    assert torch.equal(depth_from_disparity(torch.full((3, 5), 7.0), 1.0), torch.ones(3, 5))


def test_flat_loads_nothing_and_gives_ones(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # any import of it would fail
    assert load_depth_model(" Flat ", "cpu") is None
    depth = depth_map(None, _image(), 1.0)
    assert depth.shape == (HEIGHT, WIDTH) and torch.equal(depth, torch.ones(HEIGHT, WIDTH))


@pytest.mark.parametrize("weight", [1.0, 0.2, -0.5])
def test_depth_anything_gives_depth_at_the_image_size(depth_anything, weight) -> None:
    estimator = load_depth_model(depth_anything, "cpu")
    assert estimator is not None and estimator.dtype == torch.float32
    assert estimator.model_size(HEIGHT, WIDTH) == (
        42,
        56,
    )  # the side scaled least sets the scale (as the processor does), multiples of 14
    depth = depth_map(estimator, _image(), weight)
    assert depth.shape == (HEIGHT, WIDTH) and depth.dtype == torch.float32
    assert torch.isfinite(depth).all()
    assert depth.min().item() == pytest.approx(1 - DEPTH_RANGE * abs(weight), abs=1e-5)
    assert depth.max().item() == pytest.approx(1 + DEPTH_RANGE * abs(weight), abs=1e-5)


def test_negative_weight_swaps_near_and_far(depth_anything) -> None:
    estimator = load_depth_model(depth_anything, torch.device("cpu"))
    assert type(estimator.model).__name__ == "DepthAnythingForDepthEstimation"
    near_first = estimator.predict(_image(), 0.5)
    far_first = estimator.predict(_image(), -0.5)
    assert torch.allclose(far_first - 1, -(near_first - 1), atol=1e-6)


def test_dpt_checkpoint_loads_and_predicts(dpt) -> None:
    estimator = load_depth_model(dpt, "cpu")
    assert type(estimator.model).__name__ == "DPTForDepthEstimation"
    assert estimator.model_size(HEIGHT, WIDTH) == (32, 32)
    depth = estimator.predict(_image(), 1.0)
    assert depth.shape == (HEIGHT, WIDTH) and torch.isfinite(depth).all()
    assert depth.min().item() >= 1 - DEPTH_RANGE - 1e-5 and depth.max().item() <= 1 + DEPTH_RANGE + 1e-5


def test_missing_folder_is_reported_before_rendering(tmp_path) -> None:
    name = str(tmp_path / "no-such-depth-model")
    with pytest.raises(DriftwaveError) as caught:
        load_depth_model(name, "cpu")
    assert name in str(caught.value) and "flat" in str(caught.value)
    assert caught.value.field == "depth.depth_model"


def test_folder_without_a_model_names_it(tmp_path) -> None:
    with pytest.raises(DriftwaveError) as caught:
        load_depth_model(str(tmp_path), "cpu")
    assert str(tmp_path) in str(caught.value) and "flat" in str(caught.value)


def test_unknown_hub_id_offline_fails_fast(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = "driftwave-tests/no-such-depth-model"
    with pytest.raises(DriftwaveError) as caught:
        load_depth_model(name, "cpu")
    assert name in str(caught.value) and "flat" in str(caught.value)


def test_saved_depth_map_is_16_bit_grayscale_near_white(tmp_path) -> None:
    depth = torch.linspace(0.4, 1.6, WIDTH).repeat(HEIGHT, 1)  # near on the left
    path = save_depth_map(depth, tmp_path / "depth" / "00000.png")  # the folder is made when missing
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert pixels.dtype.name == "uint16" and pixels.shape == (HEIGHT, WIDTH)
    assert pixels[0, 0] == 65535 and pixels[0, -1] == 0
    assert [p.name for p in path.parent.iterdir()] == ["00000.png"]  # no .part file left behind


def test_constant_depth_map_is_mid_grey(tmp_path) -> None:
    path = save_depth_map(torch.ones(HEIGHT, WIDTH), tmp_path / "flat.png")
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert pixels.dtype.name == "uint16" and (pixels == 32768).all()
