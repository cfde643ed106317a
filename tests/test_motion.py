"""2D motion: Deforum's conventions pinned, agreement with OpenCV, borders."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from engine.motion import Motion2D, grid_from_matrix, matrix_2d, rotation_zoom_matrix, warp, warp_2d

H, W = 64, 96


def square(top=20, left=40, size=10) -> torch.Tensor:
    image = torch.zeros(1, 3, H, W)
    image[:, :, top : top + size, left : left + size] = 1
    return image


def centroid(image: torch.Tensor) -> tuple[float, float]:
    ys, xs = np.nonzero(image[0, 0].numpy() > 0.5)
    return float(xs.mean()), float(ys.mean())


def test_positive_translation_x_moves_content_right_and_y_down():
    x0, y0 = centroid(square())
    assert centroid(warp_2d(square(), Motion2D(translation_x=5))) == pytest.approx((x0 + 5, y0))
    assert centroid(warp_2d(square(), Motion2D(translation_y=5))) == pytest.approx((x0, y0 + 5))


def test_positive_angle_turns_counter_clockwise_on_screen():
    # the square sits up-left of the centre (48, 32); a quarter turn counter-clockwise puts it down-left
    x, y = centroid(warp_2d(square(), Motion2D(angle=90)))
    assert x < 48 and y > 32
    assert (x, y) == pytest.approx((40.5, 35.5))


def test_zoom_above_one_enlarges_about_the_centre():
    zoomed = warp_2d(square(27, 43, 10), Motion2D(zoom=1.5))
    assert (zoomed[0, 0] > 0.5).sum() == pytest.approx(15 * 15, rel=0.1)
    assert centroid(zoomed) == pytest.approx(centroid(square(27, 43, 10)), abs=0.6)


def test_transform_centre_moves_the_pivot():
    pivoted = warp_2d(square(0, 0, 10), Motion2D(zoom=2.0, center_x=0.0, center_y=0.0))
    assert centroid(pivoted) == pytest.approx((9.5, 9.5), abs=0.6)  # the corner stays put, the square doubles


def test_translation_comes_before_rotation():
    moved = warp_2d(square(), Motion2D(angle=90, translation_x=8))
    # translated right first (toward the centre's right), then turned: right of centre goes up
    only_turned = warp_2d(square(), Motion2D(angle=90))
    assert centroid(moved)[1] < centroid(only_turned)[1]


def test_rotation_zoom_matrix_is_opencvs():
    assert np.allclose(rotation_zoom_matrix(30, 1.2, 10, 20)[:2], cv2.getRotationMatrix2D((10, 20), 30, 1.2))


def test_warp_matches_opencv_warp_perspective():
    rng = np.random.default_rng(0)
    image = rng.random((H, W, 3)).astype(np.float32)
    motion = Motion2D(angle=12, zoom=1.1, translation_x=3.5, translation_y=-2.0)
    expected = cv2.warpPerspective(image, matrix_2d(motion, W, H), (W, H), borderMode=cv2.BORDER_REPLICATE)
    ours = warp_2d(torch.from_numpy(image).permute(2, 0, 1)[None], motion)[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - expected)[2:-2, 2:-2].max() < 1e-4


def test_wrap_border_brings_content_round():
    wrapped = warp_2d(square(), Motion2D(translation_x=60), border="wrap")
    assert centroid(wrapped) == pytest.approx((44.5 + 60 - W, 24.5))
    replicated = warp_2d(square(), Motion2D(translation_x=60), border="replicate")
    assert (replicated[0, 0] > 0.5).sum() == 0  # the square left the frame


def test_perspective_flip_phi_makes_the_top_recede():
    image = torch.zeros(1, 3, H, W)
    image[:, :, 10:54, 20:76] = 1
    warped = warp_2d(image, Motion2D(perspective=(0, 20, 0, 53)), border="zeros")[0, 0].numpy() > 0.5
    rows = np.nonzero(warped.any(axis=1))[0]
    assert warped[rows.min() + 1].sum() < warped[rows.max() - 1].sum()


def test_perspective_flip_gamma_makes_the_right_side_recede():
    image = torch.zeros(1, 3, H, W)
    image[:, :, 10:54, 20:76] = 1
    warped = warp_2d(image, Motion2D(perspective=(0, 0, 20, 53)), border="zeros")[0, 0].numpy() > 0.5
    cols = np.nonzero(warped.any(axis=0))[0]
    assert warped[:, cols.max() - 1].sum() < warped[:, cols.min() + 1].sum()


def test_perspective_theta_turns_like_angle_and_keeps_translation():
    assert centroid(warp_2d(square(), Motion2D(perspective=(90, 0, 0, 53)))) == pytest.approx((40.5, 35.5))
    flat = Motion2D(translation_x=6, perspective=(0, 0, 0, 53))
    assert centroid(warp_2d(square(), flat)) == pytest.approx((50.5, 24.5))  # Deforum drops this; we keep it


@pytest.mark.parametrize("border", ["replicate", "wrap", "reflection", "zeros"])
@pytest.mark.parametrize("channels", [1, 3])
def test_the_cpu_warp_by_opencv_is_the_grid_sample_warp(border, channels):
    image = torch.rand(1, channels, 96, 128, generator=torch.Generator().manual_seed(3))
    motion = Motion2D(angle=7.0, zoom=1.08, translation_x=5.5, translation_y=-3.25)
    sampled = warp(image, grid_from_matrix(matrix_2d(motion, 128, 96), 128, 96, "cpu"), border=border)
    assert (warp_2d(image, motion, border=border) - sampled).abs().max() < 1e-4
