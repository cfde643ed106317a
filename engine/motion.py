"""Camera motion as one sampling grid per frame, applied with ``grid_sample`` on the device.

2D motion follows Deforum's conventions, so imported files move as they did there: values are
per frame; +translation_x moves the content right, +translation_y down; +angle turns it
counter-clockwise on screen; zoom > 1 enlarges; rotation and zoom are about the transform
centre. Per frame the translation comes first, then rotation/zoom, then the perspective flip
(which, unlike Deforum, keeps the translation). Matrices map source pixels to destination
pixels (OpenCV's forward convention); the grid holds their inverse.

3D motion is Deforum's too (its ``transform_image_3d_new``): every pixel at its depth is
projected by the camera before and after the frame's move, and the picture is sampled at the
pixel minus that displacement (first order, as Deforum does, so imported files fly at the same
speed). +translation_x moves the content left (unlike 2D), +translation_y down, +translation_z
flies in; rotation_3d_z turns like the 2D angle; +rotation_3d_y moves the content left with the
right side receding, +rotation_3d_x moves it down with the top receding. Speeds scale with the
width and with 1/tan(fov/2); near and far do not change the picture (they only set depth
clipping in a rasteriser, which there is none of here).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from engine.frame_params import Motion2D, Motion3D


def translation_matrix(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def rotation_zoom_matrix(angle: float, zoom: float, cx: float, cy: float) -> np.ndarray:
    """Counter-clockwise (on screen) by ``angle`` degrees and scaled by ``zoom`` about (cx, cy).

    The same matrix as ``cv2.getRotationMatrix2D``.
    """
    a = math.radians(angle)
    alpha, beta = zoom * math.cos(a), zoom * math.sin(a)
    return np.array(
        [
            [alpha, beta, (1 - alpha) * cx - beta * cy],
            [-beta, alpha, beta * cx + (1 - alpha) * cy],
            [0.0, 0.0, 1.0],
        ]
    )


def perspective_matrix(width: int, height: int, theta: float, phi: float, gamma: float, fv: float) -> np.ndarray:
    """The image plane turned in 3D about its centre and seen by a pinhole camera.

    theta rolls it (counter-clockwise on screen, like angle), phi tilts it (> 0: the top
    recedes), gamma pans it (> 0: the right side recedes); ``fv`` is the field of view
    across the diagonal, in degrees. Unturned, the plane maps onto itself.
    """
    cx, cy = width / 2.0, height / 2.0
    focal = math.hypot(width, height) / 2.0 / math.tan(math.radians(max(min(fv, 179.0), 1.0)) / 2.0)
    t, p, g = (math.radians(v) for v in (theta, phi, gamma))
    roll = np.array([[math.cos(t), math.sin(t), 0], [-math.sin(t), math.cos(t), 0], [0, 0, 1]])
    tilt = np.array([[1, 0, 0], [0, math.cos(p), math.sin(p)], [0, -math.sin(p), math.cos(p)]])
    pan = np.array([[math.cos(g), 0, -math.sin(g)], [0, 1, 0], [math.sin(g), 0, math.cos(g)]])
    r = pan @ tilt @ roll
    # plane points (X, Y, 0) relative to the centre -> camera at z = -focal looking along +z
    centered = np.array(
        [
            [focal * r[0, 0] + cx * r[2, 0], focal * r[0, 1] + cx * r[2, 1], cx * focal],
            [focal * r[1, 0] + cy * r[2, 0], focal * r[1, 1] + cy * r[2, 1], cy * focal],
            [r[2, 0], r[2, 1], focal],
        ]
    )
    return centered @ translation_matrix(-cx, -cy) / focal


def matrix_2d(motion: Motion2D, width: int, height: int) -> np.ndarray:
    """Source -> destination homography of one frame: translate, rotate/zoom, perspective."""
    cx, cy = motion.center_x * width, motion.center_y * height
    matrix = rotation_zoom_matrix(motion.angle, motion.zoom, cx, cy) @ translation_matrix(
        motion.translation_x, motion.translation_y
    )
    if motion.perspective is not None:
        matrix = perspective_matrix(width, height, *motion.perspective) @ matrix
    return matrix


@lru_cache(maxsize=8)
def _pixel_centres(height: int, width: int, device: str) -> torch.Tensor:
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64, device=device),
        torch.arange(width, dtype=torch.float64, device=device),
        indexing="ij",
    )
    return torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)  # (H, W, 3)


def grid_from_matrix(matrix: np.ndarray, width: int, height: int, device: torch.device | str) -> torch.Tensor:
    """For each destination pixel, where to sample the source: (1, H, W, 2) in [-1, 1]."""
    inverse = torch.as_tensor(np.linalg.inv(matrix), dtype=torch.float64, device=device)
    source = _pixel_centres(height, width, str(device)) @ inverse.T
    xy = source[..., :2] / source[..., 2:3]
    scale = torch.tensor([width, height], dtype=torch.float64, device=device)
    return ((2.0 * xy + 1.0) / scale - 1.0).float().unsqueeze(0)


def warp(image: torch.Tensor, grid: torch.Tensor, *, border: str = "replicate", mode: str = "bilinear") -> torch.Tensor:
    """Resample ``image`` at ``grid``. border: replicate, wrap, reflection or zeros."""
    if border == "wrap":
        height, width = image.shape[-2:]
        padded = F.pad(image, (1, 1, 1, 1), mode="circular")
        scale = torch.tensor([width, height], dtype=grid.dtype, device=grid.device)
        pixels = ((grid + 1.0) * scale - 1.0) / 2.0  # back to source pixel coordinates
        pixels = torch.remainder(pixels + 0.5, scale) - 0.5 + 1.0  # wrap, then shift into the padding
        padded_scale = scale + 2
        grid = (2.0 * pixels + 1.0) / padded_scale - 1.0
        return F.grid_sample(padded, grid, mode=mode, padding_mode="border", align_corners=False)
    padding = {"replicate": "border", "border": "border", "reflection": "reflection", "zeros": "zeros"}[border]
    return F.grid_sample(image, grid, mode=mode, padding_mode=padding, align_corners=False)


def warp_2d(image: torch.Tensor, motion: Motion2D, *, border: str = "replicate") -> torch.Tensor:
    height, width = image.shape[-2:]
    matrix = matrix_2d(motion, width, height)
    if image.device.type == "cpu" and image.dtype == torch.float32 and image.shape[1] <= 4:
        return _warp_2d_opencv(image, matrix, border)
    grid = grid_from_matrix(matrix, width, height, image.device)
    return warp(image, grid.to(image.dtype), border=border)


_OPENCV_BORDERS = {"replicate": "BORDER_REPLICATE", "border": "BORDER_REPLICATE", "wrap": "BORDER_WRAP"}
_OPENCV_BORDERS |= {"reflection": "BORDER_REFLECT", "zeros": "BORDER_CONSTANT"}


def _warp_2d_opencv(image: torch.Tensor, matrix: np.ndarray, border: str) -> torch.Tensor:
    """The same bilinear warp as ``warp`` at ``grid_from_matrix`` (pixel centres, the border
    rule), by OpenCV's warpPerspective, as Deforum's anim_frame_warp_2d: on the CPU several
    times faster than grid_sample."""
    import cv2

    from engine.images import through_opencv

    height, width = image.shape[-2:]
    flags = {"flags": cv2.INTER_LINEAR, "borderMode": getattr(cv2, _OPENCV_BORDERS[border])}
    return through_opencv(image, lambda pixels: cv2.warpPerspective(pixels, matrix, (width, height), **flags))


TRANSLATION_SCALE = 1.0 / 200.0  # camera units per translation unit (Deforum's, from Disco Diffusion)


def euler_xyz(x: float, y: float, z: float) -> torch.Tensor:
    """Rotation for Euler angles (radians) about X, then Y, then Z: R = Rx @ Ry @ Rz (pytorch3d's "XYZ")."""
    cx, sx, cy, sy, cz, sz = math.cos(x), math.sin(x), math.cos(y), math.sin(y), math.cos(z), math.sin(z)
    rx = torch.tensor([[1, 0, 0], [0, cx, -sx], [0, sx, cx]], dtype=torch.float64)
    ry = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], dtype=torch.float64)
    rz = torch.tensor([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]], dtype=torch.float64)
    return rx @ ry @ rz


@lru_cache(maxsize=8)
def _plane(height: int, width: int, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pixels as points on the image plane, x and y in [-1, 1] (Deforum's), and the identity
    sampling grid (pixel centres, as ``grid_sample`` reads them)."""
    ys, xs = torch.meshgrid(
        torch.linspace(-1.0, 1.0, height, device=device),
        torch.linspace(-1.0, 1.0, width, device=device),
        indexing="ij",
    )
    identity = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], device=device)
    centres = F.affine_grid(identity, [1, 1, height, width], align_corners=False)
    return xs, ys, centres


def grid_3d(motion: Motion3D, depth: torch.Tensor | None, width: int, height: int, device) -> torch.Tensor:
    """For each destination pixel, where to sample the source: (1, H, W, 2) in [-1, 1].

    ``depth`` is (H, W) in camera units (1 = the flat plane); None is flat. Each pixel (x, y, z)
    moves to (x, y, z) @ R + t (row vectors, as pytorch3d's world-to-view transform) and is
    projected by x / (z tan(fov/2) aspect), y / (z tan(fov/2)); the grid is the pixel minus the
    difference of the two projections. Written out per coordinate: no (H, W, 3) temporaries.
    """
    x, y, centres = _plane(height, width, str(device))
    r = euler_xyz(*(math.radians(a) for a in (motion.rotation_x, motion.rotation_y, motion.rotation_z))).tolist()
    tx, ty, tz = (v * TRANSLATION_SCALE for v in (-motion.translation_x, motion.translation_y, -motion.translation_z))
    tan_half = math.tan(math.radians(motion.fov) / 2.0)
    sx, sy = 1.0 / (tan_half * motion.aspect), 1.0 / tan_half
    if depth is None:
        z, inverse_z = 1.0, 1.0
        moved_z = (x * r[0][2]).add_(y, alpha=r[1][2]).add_(r[2][2] + tz)
        moved_x = (x * r[0][0]).add_(y, alpha=r[1][0]).add_(r[2][0] + tx)
        moved_y = (x * r[0][1]).add_(y, alpha=r[1][1]).add_(r[2][1] + ty)
    else:
        z = depth.to(device=device, dtype=torch.float32)
        inverse_z = z.reciprocal()
        moved_z = (x * r[0][2]).add_(y, alpha=r[1][2]).add_(z, alpha=r[2][2]).add_(tz)
        moved_x = (x * r[0][0]).add_(y, alpha=r[1][0]).add_(z, alpha=r[2][0]).add_(tx)
        moved_y = (x * r[0][1]).add_(y, alpha=r[1][1]).add_(z, alpha=r[2][1]).add_(ty)
    inverse_moved = moved_z.clamp_(min=1e-4).reciprocal_()
    grid = torch.empty_like(centres)
    # centre - (after - before) = centre + s * (x / z - moved_x / moved_z)
    torch.sub(x * inverse_z, moved_x.mul_(inverse_moved), out=grid[0, ..., 0]).mul_(sx).add_(centres[0, ..., 0])
    torch.sub(y * inverse_z, moved_y.mul_(inverse_moved), out=grid[0, ..., 1]).mul_(sy).add_(centres[0, ..., 1])
    return grid


def warp_3d(
    image: torch.Tensor,
    motion: Motion3D,
    depth: torch.Tensor | None = None,
    *,
    padding: str = "border",
    sampling: str = "bicubic",
) -> torch.Tensor:
    """The frame after the camera's move, seen from the new position."""
    height, width = image.shape[-2:]
    grid = grid_3d(motion, depth, width, height, image.device).to(image.dtype)
    warped = warp(image, grid, border=padding, mode=sampling)
    return warped.clamp(0.0, 1.0) if sampling == "bicubic" else warped
