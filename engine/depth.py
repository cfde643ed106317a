"""Depth maps for 3D warping: a transformers depth model on the render device, or flat depth.

Convention: depth maps are depth (not disparity), (H, W) float32 at the image's size, relative
to a flat plane at 1. The models give relative inverse depth (disparity, larger = nearer); each
frame's disparity is normalised to ``dn`` in [0, 1] (its min..max; a constant map gives 0.5) and
``z = 1 + weight * DEPTH_RANGE * (1 - 2 * dn)``. With ``midas_weight`` 1 the nearest pixel is at
0.4 and the farthest at 1.6; 0 is the flat plane; negative weights swap near and far. The mean
stays near 1, so camera speeds match flat depth. ``depth_model = "flat"`` loads nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engine.hub import load_pretrained
from engine.images import write_image

DEPTH_RANGE = 0.6  # half the spread of depth around the flat plane at weight 1
FIELD = "depth.depth_model"
HINT = 'check the hub id or folder, or set depth_model = "flat" to warp without a depth model'


def depth_from_disparity(disparity: torch.Tensor, weight: float) -> torch.Tensor:
    """Disparity (larger = nearer) -> depth around 1, spread ``weight * DEPTH_RANGE`` each way."""
    return 1.0 + weight * DEPTH_RANGE * (1.0 - 2.0 * _normalised(disparity))


def _normalised(values: torch.Tensor) -> torch.Tensor:
    """``values`` scaled to [0, 1] over their min..max, float32; a constant map gives 0.5."""
    values = values.detach().float()
    low, span = values.amin(), values.amax() - values.amin()
    return torch.where(span > 0, (values - low) / span.clamp_min(torch.finfo(torch.float32).tiny), 0.5)


class DepthEstimator:
    """A depth-estimation model and its preprocessing, done in torch on the model's device."""

    def __init__(self, model: Any, processor: Any, device: torch.device, dtype: torch.dtype) -> None:
        self.model, self.device, self.dtype = model, device, dtype
        size = processor.size
        edge = getattr(size, "shortest_edge", None) or 518
        self.size = (size.height, size.width) if getattr(size, "height", None) else (edge, edge)
        self.keep_aspect = bool(getattr(processor, "keep_aspect_ratio", False))
        self.multiple = _multiple(processor, model.config)
        self.mode = "bilinear" if getattr(processor, "resample", 3) == 2 else "bicubic"
        normalize = getattr(processor, "do_normalize", True)
        mean, std = (processor.image_mean, processor.image_std) if normalize else ((0.0,) * 3, (1.0,) * 3)
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)
        config = model.config
        self.metric = getattr(config, "depth_estimation_type", "") == "metric" or config.model_type == "zoedepth"

    def model_size(self, height: int, width: int) -> tuple[int, int]:
        """The input size for an image, as the checkpoint's image processor would resize it."""
        scale_h, scale_w = self.size[0] / height, self.size[1] / width
        if self.keep_aspect:
            scale_h = scale_w = scale_w if abs(1 - scale_w) < abs(1 - scale_h) else scale_h
        step = self.multiple
        return max(step, round(scale_h * height / step) * step), max(step, round(scale_w * width / step) * step)

    @torch.inference_mode()
    def predict(self, image: torch.Tensor, weight: float) -> torch.Tensor:
        """(1, 3, H, W) image in [0, 1] -> (H, W) float32 depth on the device (see the module docstring)."""
        height, width = image.shape[-2:]
        pixels = image.to(self.device, torch.float32)
        pixels = F.interpolate(pixels, self.model_size(height, width), mode=self.mode, antialias=True)
        pixels = ((pixels.clamp(0, 1) - self.mean) / self.std).to(self.dtype)
        predicted = self.model(pixel_values=pixels).predicted_depth.float()
        predicted = F.interpolate(predicted[:1, None], (height, width), mode="bilinear")[0, 0]
        disparity = 1.0 / predicted.clamp_min(1e-6) if self.metric else predicted
        return depth_from_disparity(disparity, weight)


def _multiple(processor: Any, config: Any) -> int:
    """What the input's sides must be a multiple of: the processor's rounding, else the patch size."""
    for value in (getattr(processor, "ensure_multiple_of", None), getattr(processor, "size_divisor", None)):
        if isinstance(value, int) and value > 1:
            return value
    patch = getattr(config, "patch_size", 1)
    return patch if isinstance(patch, int) and patch > 1 else 1


def load_depth_model(name: str, device: torch.device | str, dtype: torch.dtype | None = None) -> DepthEstimator | None:
    """Load a depth checkpoint (hub id or folder) for ``device``; ``"flat"`` gives None (no model)."""
    if name.strip().lower() == "flat":
        return None
    device = torch.device(device)
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    found = {"what": "depth model", "field": FIELD, "hint": HINT}
    processor = load_pretrained(AutoImageProcessor, name, **found)
    model = load_pretrained(AutoModelForDepthEstimation, name, **found, dtype=dtype)
    return DepthEstimator(model.to(device).eval(), processor, device, dtype)


def depth_map(estimator: DepthEstimator | None, image: torch.Tensor, weight: float) -> torch.Tensor:
    """The frame's depth: the model's (see the module docstring), or ones without a model."""
    if estimator is None:
        return torch.ones(image.shape[-2:], dtype=torch.float32, device=image.device)
    return estimator.predict(image, weight)


def save_depth_map(depth: torch.Tensor, path: str | Path) -> Path:
    """Write ``depth`` as a 16-bit grayscale PNG, atomically: near white, far black, per-frame min..max."""
    near = 1.0 - _normalised(depth)
    pixels = np.round(near.cpu().numpy() * 65535.0).astype(np.uint16)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_image(pixels, path, bits=16)
