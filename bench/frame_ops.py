"""Per-frame work besides the model, at 512x512 on the CPU (and the GPU where there is one).

Ours: the 2D warp as one grid_sample, LAB colour matching (the reference frame measured once
per run, as the render loop does), perlin grain and the unsharp mask, all torch. Baseline, side
by side on the same frames: the same operations done the way Deforum does them -
cv2.warpPerspective, skimage.exposure.match_histograms in LAB (cv2 colour conversions), numpy
perlin octaves times white noise, cv2 unsharp mask.

Run: .venv/bin/python bench/frame_ops.py
"""

from __future__ import annotations

import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage.exposure import match_histograms

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from engine import coherence
from engine.motion import TRANSLATION_SCALE, Motion2D, Motion3D, euler_xyz, matrix_2d, warp_2d, warp_3d

SIZE = 512
MOTION = Motion2D(angle=0.7, zoom=1.03, translation_x=2.0, translation_y=-1.0)
MOTION_3D = Motion3D(translation_x=2.0, translation_z=6.0, rotation_y=0.8, rotation_z=0.5)


# -- the baseline: Deforum's way ---------------------------------------------------------------------


def perlin_numpy(shape, res, rng):
    """pvigier's perlin-numpy, the numpy form of Deforum's rand_perlin_2d."""

    def fade(t):
        return 6 * t**5 - 15 * t**4 + 10 * t**3

    delta = (res[0] / shape[0], res[1] / shape[1])
    d = (shape[0] // res[0], shape[1] // res[1])
    grid = np.mgrid[0 : res[0] : delta[0], 0 : res[1] : delta[1]].transpose(1, 2, 0) % 1
    angles = 2 * np.pi * rng.random((res[0] + 1, res[1] + 1))
    gradients = np.dstack((np.cos(angles), np.sin(angles)))
    gradients = gradients.repeat(d[0], 0).repeat(d[1], 1)
    g00 = gradients[: -d[0], : -d[1]]
    g10 = gradients[d[0] :, : -d[1]]
    g01 = gradients[: -d[0], d[1] :]
    g11 = gradients[d[0] :, d[1] :]
    n00 = np.sum(np.dstack((grid[:, :, 0], grid[:, :, 1])) * g00, 2)
    n10 = np.sum(np.dstack((grid[:, :, 0] - 1, grid[:, :, 1])) * g10, 2)
    n01 = np.sum(np.dstack((grid[:, :, 0], grid[:, :, 1] - 1)) * g01, 2)
    n11 = np.sum(np.dstack((grid[:, :, 0] - 1, grid[:, :, 1] - 1)) * g11, 2)
    t = fade(grid)
    n0 = n00 * (1 - t[:, :, 0]) + t[:, :, 0] * n10
    n1 = n01 * (1 - t[:, :, 0]) + t[:, :, 0] * n11
    return np.sqrt(2) * ((1 - t[:, :, 1]) * n0 + t[:, :, 1] * n1)


def deforum_frame(image: np.ndarray, reference_lab: np.ndarray, seed: int) -> np.ndarray:
    warped = cv2.warpPerspective(image, matrix_2d(MOTION, SIZE, SIZE), (SIZE, SIZE), borderMode=cv2.BORDER_REPLICATE)
    lab = cv2.cvtColor(warped, cv2.COLOR_RGB2LAB)
    matched = cv2.cvtColor(match_histograms(lab, reference_lab, channel_axis=-1).astype(np.uint8), cv2.COLOR_LAB2RGB)
    rng = np.random.default_rng(seed)
    shape = np.zeros((SIZE, SIZE))
    frequency, amplitude = 1, 1.0
    for _ in range(4):
        shape += amplitude * perlin_numpy((SIZE, SIZE), (8 * frequency, 8 * frequency), rng)
        frequency, amplitude = frequency * 2, amplitude * 0.5
    noise = rng.standard_normal((SIZE, SIZE, 3)) * ((shape + 1) / 2)[..., None]
    noised = np.clip(matched / 127.5 - 1 + noise * 0.065, -1, 1)
    pixels = ((noised + 1) * 127.5).astype(np.uint8)
    blurred = cv2.GaussianBlur(pixels, (5, 5), 1.0)
    return np.clip(1.1 * pixels.astype(np.float32) - 0.1 * blurred, 0, 255).astype(np.uint8)


def remap_3d(image: np.ndarray, depth: np.ndarray, motion: Motion3D, interpolation: int) -> np.ndarray:
    """The same projection as engine.motion.grid_3d, per pixel in numpy, sampled by cv2.remap."""
    height, width = image.shape[:2]
    ys, xs = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
    rotation = euler_xyz(*(np.radians(a) for a in (motion.rotation_x, motion.rotation_y, motion.rotation_z))).numpy()
    shift = np.array([-motion.translation_x, motion.translation_y, -motion.translation_z]) * TRANSLATION_SCALE
    tan_half = np.tan(np.radians(motion.fov) / 2)
    scale = np.array([1 / (tan_half * motion.aspect), 1 / tan_half])
    points = np.stack([xs, ys, depth], axis=-1)
    moved = points @ rotation + shift
    offset = moved[..., :2] * scale / moved[..., 2:3] - points[..., :2] * scale / depth[..., None]
    map_x = np.arange(width)[None, :] - offset[..., 0] * width / 2
    map_y = np.arange(height)[:, None] - offset[..., 1] * height / 2
    return cv2.remap(
        image, map_x.astype(np.float32), map_y.astype(np.float32), interpolation, borderMode=cv2.BORDER_REPLICATE
    )


# -- ours ----------------------------------------------------------------------------------------------


def our_frame(image: torch.Tensor, reference: coherence.ColorReference, seed: int) -> torch.Tensor:
    warped = warp_2d(image, MOTION)
    matched = reference.match(warped)
    noised = coherence.add_noise(matched, 0.065, seed, kind="perlin")
    return coherence.unsharp_mask(noised, 5, 1.0, 0.1, 0)


def timed(work, repeats: int, sync=lambda: None) -> float:
    work(0)
    sync()
    times = []
    for index in range(repeats):
        start = time.perf_counter()
        work(index + 1)
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    rng = np.random.default_rng(0)
    frame = (rng.random((SIZE, SIZE, 3)) * 255).astype(np.uint8)
    frame = cv2.GaussianBlur(frame, (0, 0), 3)
    reference = cv2.GaussianBlur((rng.random((SIZE, SIZE, 3)) * 255).astype(np.uint8), (0, 0), 5)
    reference_lab = cv2.cvtColor(reference, cv2.COLOR_RGB2LAB)
    repeats = 15

    base = timed(lambda seed: deforum_frame(frame, reference_lab, seed), repeats)
    image = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255
    target = coherence.ColorReference(torch.from_numpy(reference).permute(2, 0, 1)[None].float() / 255, "LAB")
    ours = timed(lambda seed: our_frame(image, target, seed), repeats)

    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"opencv {cv2.__version__}"
    )
    print(
        f"per-frame non-model work at {SIZE}x{SIZE} (warp + LAB colour match + perlin grain + unsharp), median of "
        f"{repeats}"
    )
    print(f"  Deforum's way (cv2 / skimage / numpy)   {base * 1e3:8.1f} ms")
    print(
        f"  ours (torch, CPU)                       {ours * 1e3:8.1f} ms   = {ours / base:.2f} of the baseline "
        f"(target <= 0.33)"
    )
    if torch.cuda.is_available():
        device_image, device_target = image.cuda(), coherence.ColorReference(target.image.cuda(), "LAB")
        gpu = timed(lambda seed: our_frame(device_image, device_target, seed), repeats, torch.cuda.synchronize)
        print(f"  ours (torch, {torch.cuda.get_device_name()})   {gpu * 1e3:8.2f} ms")

    bench_3d(frame, image, repeats)


def bench_3d(frame: np.ndarray, image: torch.Tensor, repeats: int) -> None:
    ys, xs = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    depth = 1 + 0.3 * np.sin(6 * xs) * np.cos(4 * ys)  # a smooth depth map around the flat plane
    depth_tensor = torch.from_numpy(depth).float()
    print(f"3D warp at {SIZE}x{SIZE} with a depth map, median of {repeats}")
    for name, flag in (("bicubic", cv2.INTER_CUBIC), ("bilinear", cv2.INTER_LINEAR)):
        base = timed(partial(lambda _, f: remap_3d(frame, depth, MOTION_3D, f), f=flag), repeats)
        ours = timed(
            partial(lambda _, n, i, d: warp_3d(i, MOTION_3D, d, sampling=n), n=name, i=image, d=depth_tensor), repeats
        )
        print(
            f"  {name:8}  numpy + cv2.remap {base * 1e3:6.1f} ms   ours (torch, CPU) {ours * 1e3:6.1f} ms   "
            f"= {base / ours:.2f}x faster (target >= 2x)"
        )
        if torch.cuda.is_available():
            on_gpu = partial(
                lambda _, n, i, d: warp_3d(i, MOTION_3D, d, sampling=n), n=name, i=image.cuda(), d=depth_tensor.cuda()
            )
            gpu = timed(on_gpu, repeats, torch.cuda.synchronize)
            print(f"            ours ({torch.cuda.get_device_name()}) {gpu * 1e3:6.2f} ms = {base / gpu:.0f}x")


if __name__ == "__main__":
    main()
