"""3D motion: Deforum's directions and speeds pinned, depth parallax, agreement with 2D."""

from __future__ import annotations

import math

import pytest
import torch

from engine.motion import Motion2D, Motion3D, grid_3d, warp_2d, warp_3d

H, W = 128, 256


def square(top=54, left=118, size=20) -> torch.Tensor:
    image = torch.zeros(1, 3, H, W)
    image[:, :, top : top + size, left : left + size] = 1
    return image


def centroid(image: torch.Tensor) -> tuple[float, float]:
    """Brightness-weighted centre (moves by exactly the shift under bilinear resampling)."""
    weights = image[0, 0].double()
    ys, xs = torch.meshgrid(torch.arange(weights.shape[0]), torch.arange(weights.shape[1]), indexing="ij")
    total = weights.sum()
    return float((weights * xs).sum() / total), float((weights * ys).sum() / total)


def spread(image: torch.Tensor) -> tuple[float, float]:
    """Brightness-weighted standard deviation across and down: the size of the bright area."""
    weights = image[0, 0].double()
    ys, xs = torch.meshgrid(torch.arange(weights.shape[0]), torch.arange(weights.shape[1]), indexing="ij")
    x, y = centroid(image)
    total = weights.sum()
    return float(((weights * (xs - x) ** 2).sum() / total).sqrt()), float(
        ((weights * (ys - y) ** 2).sum() / total).sqrt()
    )


def textured(seed: int = 0, height: int = H, width: int = W) -> torch.Tensor:
    """Smooth random texture in [0.2, 1]: warps of it compare well under interpolation."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 8, width // 8, generator=generator)
    smooth = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    return 0.2 + 0.8 * smooth.clamp(0, 1)


def shift(motion: Motion3D, depth=None) -> tuple[float, float]:
    x0, y0 = centroid(square())
    x1, y1 = centroid(warp_3d(square(), motion, depth, sampling="bilinear"))
    return x1 - x0, y1 - y0


def test_translation_x_moves_content_left_at_deforums_speed():
    # Deforum at fov 70, flat depth: 5 units move 4.57 px per frame at 256 px width
    dx, dy = shift(Motion3D(translation_x=5))
    assert dx == pytest.approx(-4.57, abs=0.05) and dy == pytest.approx(0, abs=0.05)


def test_translation_y_moves_content_down_and_speeds_follow_the_fov():
    # vertical speed scales with the height (grid units), and 1/tan(fov/2)
    dx, dy = shift(Motion3D(translation_y=5))
    assert dy == pytest.approx(5 / 200 / math.tan(math.radians(35)) * H / 2, abs=0.05) and dx == pytest.approx(
        0, abs=1e-3
    )
    wide = shift(Motion3D(translation_y=5, fov=120))[1]
    assert wide / dy == pytest.approx(math.tan(math.radians(35)) / math.tan(math.radians(60)), rel=0.02)


def test_translation_z_with_flat_depth_is_a_zoom_of_deforums_size():
    image = textured()
    flown = warp_3d(image, Motion3D(translation_z=10), sampling="bilinear")
    zoomed = warp_2d(image, Motion2D(zoom=1.0816))
    inner = (slice(None), slice(None), slice(8, -8), slice(16, -16))
    assert torch.abs(flown - zoomed)[inner].mean() < 0.004
    assert torch.abs(flown - image)[inner].mean() > 0.02  # it did move


def test_rotation_3d_z_turns_like_the_2d_angle():
    # first order, as Deforum: 2 degrees turn a square picture 2.86 degrees at fov 70
    image = textured(1, 128, 128)
    rolled = warp_3d(image, Motion3D(rotation_z=2), sampling="bilinear")
    inner = (slice(None), slice(None), slice(16, -16), slice(16, -16))
    same = torch.abs(rolled - warp_2d(image, Motion2D(angle=2.86)))[inner].mean()
    opposite = torch.abs(rolled - warp_2d(image, Motion2D(angle=-2.86)))[inner].mean()
    assert same < 0.006 < opposite


def test_rotation_3d_y_moves_content_left_with_the_right_side_receding():
    dx, _ = shift(Motion3D(rotation_y=2))
    assert dx < -3
    turned = Motion3D(rotation_y=5)
    left, right = (spread(warp_3d(square(54, x), turned, sampling="bilinear"))[1] for x in (40, 196))
    assert right < spread(square())[1] < left


def test_rotation_3d_x_moves_content_down_with_the_top_receding():
    _, dy = shift(Motion3D(rotation_x=2))
    assert dy > 1.5
    turned = Motion3D(rotation_x=5)
    top, bottom = (spread(warp_3d(square(y, 118), turned, sampling="bilinear"))[0] for y in (14, 94))
    assert top < spread(square())[0] < bottom


def test_nearer_pixels_move_further():
    near = torch.full((H, W), 0.5)
    assert shift(Motion3D(translation_y=5), near)[1] == pytest.approx(2 * shift(Motion3D(translation_y=5))[1])
    depth = torch.ones(H, W)
    depth[:, : W // 2] = 0.5  # the left half is twice as near: its pixels move twice as far
    moved = grid_3d(Motion3D(translation_x=5), depth, W, H, "cpu") - grid_3d(Motion3D(), depth, W, H, "cpu")
    assert moved[0, H // 2, 10, 0] == pytest.approx(2 * moved[0, H // 2, W - 10, 0])


def test_no_motion_is_the_identity_grid():
    grid = grid_3d(Motion3D(), None, W, H, "cpu")
    image = textured(2)
    assert torch.allclose(warp_3d(image, Motion3D(), sampling="bilinear"), image, atol=1e-5)
    assert grid.shape == (1, H, W, 2)


@pytest.mark.parametrize("padding", ["border", "reflection", "zeros"])
def test_padding_modes_fill_what_comes_into_view(padding):
    image = textured(3)
    moved = warp_3d(image, Motion3D(translation_x=40), padding=padding, sampling="nearest")
    edge = moved[..., -4:]
    if padding == "zeros":
        assert edge.abs().max() == 0
    else:
        assert edge.min() > 0
