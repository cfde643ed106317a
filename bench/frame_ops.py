"""Per-frame work besides the model at 512x512: ours against Deforum's own functions.

Baseline: Deforum's 2D frame between two generations, in the order of its render loop
(``render.py``: warp -> colour match -> contrast -> anti-blur -> grain), running Deforum's own
code (bench/anchors: sd-webui-deforum at its pinned commit):
- ``animation.anim_frame_warp_2d``: cv2.getRotationMatrix2D, cv2.warpPerspective (bilinear,
  replicated border) on the uint8 image;
- ``colors.maintain_colors`` (LAB): cv2.cvtColor to 8-bit LAB, skimage
  ``exposure.match_histograms``, cv2.cvtColor back;
- contrast: ``(prev_img * contrast).round().astype(np.uint8)``;
- ``image_sharpening.unsharp_mask``: cv2.GaussianBlur, float64 arithmetic, round to uint8;
- ``noise.add_noise`` (perlin): torch ``randn`` and ``rand_perlin_2d_octaves``, interpolate,
  ``sample_to_cv2``, cv2.addWeighted.
Ours: the engine's torch functions on float images (engine.motion.warp_2d, ColorReference,
apply_contrast, unsharp_mask, add_noise), the reference measured once per run as the render
loop does. The grain's seed changes every frame in both (seed_behavior "iter").

Also the 3D warp: ours against a straightforward numpy + cv2.remap form of the same projection
(Deforum's own 3D warp needs pytorch3d, which is not installed here).

Run: .venv/bin/python bench/frame_ops.py [--json]
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.anchors import deforum_frame_functions
from bench.common import arguments, median_seconds, report, side_by_side
from engine import coherence
from engine.motion import TRANSLATION_SCALE, Motion2D, Motion3D, euler_xyz, warp_2d, warp_3d

SIZE = 512
MOTION = Motion2D(angle=0.7, zoom=1.03, translation_x=2.0, translation_y=-1.0)
MOTION_3D = Motion3D(translation_x=2.0, translation_z=6.0, rotation_y=0.8, rotation_z=0.5)
CONTRAST, NOISE, PERLIN = 1.0, 0.065, (8, 8, 4, 0.5)  # Deforum's defaults
KERNEL, SIGMA, AMOUNT, THRESHOLD = 5, 1.0, 0.1, 0


def deforum_keys() -> tuple[SimpleNamespace, SimpleNamespace, SimpleNamespace]:
    """The arguments anim_frame_warp_2d reads, holding MOTION at frame 0."""
    args = SimpleNamespace(W=SIZE, H=SIZE)
    anim_args = SimpleNamespace(enable_perspective_flip=False, border="replicate")
    keys = SimpleNamespace(
        angle_series=[MOTION.angle],
        zoom_series=[MOTION.zoom],
        translation_x_series=[MOTION.translation_x],
        translation_y_series=[MOTION.translation_y],
        transform_center_x_series=[0.5],
        transform_center_y_series=[0.5],
    )
    return args, anim_args, keys


def deforum_steps(deforum, reference: np.ndarray) -> dict:
    args, anim_args, keys = deforum_keys()
    return {
        "warp": lambda image, seed: deforum.anim_frame_warp_2d(image, args, anim_args, keys, 0),
        "colour match (LAB)": lambda image, seed: deforum.maintain_colors(image, reference, "LAB"),
        "contrast": lambda image, seed: (image * CONTRAST).round().astype(np.uint8),
        "unsharp mask": lambda image, seed: deforum.unsharp_mask(image, (KERNEL, KERNEL), SIGMA, AMOUNT, THRESHOLD),
        "perlin grain": lambda image, seed: deforum.add_noise(image, NOISE, seed, "perlin", PERLIN),
    }


def our_steps(reference: coherence.ColorReference) -> dict:
    return {
        "warp": lambda image, seed: warp_2d(image, MOTION),
        "colour match (LAB)": lambda image, seed: reference.match(image),
        "contrast": lambda image, seed: coherence.apply_contrast(image, CONTRAST),
        "unsharp mask": lambda image, seed: coherence.unsharp_mask(image, KERNEL, SIGMA, AMOUNT, THRESHOLD),
        "perlin grain": lambda image, seed: coherence.add_noise(
            image, NOISE, seed, kind="perlin", perlin_cells=PERLIN[:2], octaves=PERLIN[2], persistence=PERLIN[3]
        ),
    }


def whole_frame(steps: dict, image, seed: int):
    for step in steps.values():
        image = step(image, seed)
    return image


def bench_images() -> tuple[np.ndarray, np.ndarray]:
    """A smooth frame and a different smooth reference, uint8 RGB."""
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur((rng.random((SIZE, SIZE, 3)) * 255).astype(np.uint8), (0, 0), 3)
    reference = cv2.GaussianBlur((rng.random((SIZE, SIZE, 3)) * 255).astype(np.uint8), (0, 0), 5)
    return frame, reference


def as_tensor(image: np.ndarray, device: str = "cpu") -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1], contiguous as the engine's frames are."""
    return torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255).contiguous().to(device)


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


def bench_2d(repeats: int) -> dict:
    frame, reference = bench_images()
    deforum = deforum_steps(deforum_frame_functions(), reference)
    ours = our_steps(coherence.ColorReference(as_tensor(reference), "LAB"))
    image = as_tensor(frame)
    result = {"size": SIZE, "repeats": repeats, "steps": {}}
    for name in ours:
        times = side_by_side(
            {
                "baseline": lambda seed, n=name: deforum[n](frame, seed),
                "ours": lambda seed, n=name: ours[n](image, seed),
            },
            repeats,
        )
        result["steps"][name] = {"baseline_ms": times["baseline"] * 1e3, "ours_ms": times["ours"] * 1e3}
    times = side_by_side(
        {
            "baseline": lambda seed: whole_frame(deforum, frame, seed),
            "ours": lambda seed: whole_frame(ours, image, seed),
        },
        repeats,
    )
    base, mine = times["baseline"], times["ours"]
    result.update(baseline_ms=base * 1e3, ours_ms=mine * 1e3, ratio=mine / base, target_ratio=1 / 3)
    if torch.cuda.is_available():
        on_gpu = our_steps(coherence.ColorReference(as_tensor(reference, "cuda"), "LAB"))
        image_gpu = as_tensor(frame, "cuda")
        gpu = median_seconds(lambda seed: whole_frame(on_gpu, image_gpu, seed), repeats, torch.cuda.synchronize)
        result["ours_gpu_ms"] = gpu * 1e3
    return result


def bench_3d(repeats: int) -> dict:
    frame, _ = bench_images()
    image = as_tensor(frame)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    depth = 1 + 0.3 * np.sin(6 * xs) * np.cos(4 * ys)  # a smooth depth map around the flat plane
    depth_tensor = torch.from_numpy(depth).float()
    result = {}
    for name, flag in (("bicubic", cv2.INTER_CUBIC), ("bilinear", cv2.INTER_LINEAR)):
        times = side_by_side(
            {
                "baseline": partial(lambda _, f: remap_3d(frame, depth, MOTION_3D, f), f=flag),
                "ours": lambda _, n=name: warp_3d(image, MOTION_3D, depth_tensor, sampling=n),
            },
            repeats,
        )
        result[name] = {"baseline_ms": times["baseline"] * 1e3, "ours_ms": times["ours"] * 1e3}
        if torch.cuda.is_available():
            on_gpu = partial(warp_3d, image.cuda(), MOTION_3D, depth_tensor.cuda(), sampling=name)
            gpu = median_seconds(lambda _, work=on_gpu: work(), repeats, torch.cuda.synchronize)
            result[name]["ours_gpu_ms"] = gpu * 1e3
    return result


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    options = parser.parse_args()
    frame_2d = bench_2d(options.repeats)
    print(
        f"per-frame non-model work at {SIZE}x{SIZE}, median of {options.repeats}"
        f" run in turn (torch {torch.__version__})"
    )
    print(f"  {'step':20} {'Deforum':>10} {'ours':>10}")
    for name, step in frame_2d["steps"].items():
        print(f"  {name:20} {step['baseline_ms']:8.1f} ms {step['ours_ms']:8.1f} ms")
    print(
        f"  {'whole frame':20} {frame_2d['baseline_ms']:8.1f} ms {frame_2d['ours_ms']:8.1f} ms"
        f"   = {frame_2d['ratio']:.2f} of Deforum's (target <= 0.33)"
    )
    if "ours_gpu_ms" in frame_2d:
        print(f"  ours on {torch.cuda.get_device_name()}: {frame_2d['ours_gpu_ms']:.2f} ms")
    warp = bench_3d(options.repeats)
    print(f"3D warp at {SIZE}x{SIZE} with a depth map (numpy + cv2.remap against ours)")
    for name, row in warp.items():
        print(f"  {name:8} {row['baseline_ms']:6.1f} ms   ours {row['ours_ms']:6.1f} ms")
    report({**frame_2d, "warp_3d": warp}, options.json)


if __name__ == "__main__":
    main()
