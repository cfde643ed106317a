"""Hybrid video for 2D/3D: the init video's camera motion carried into the render, and the video
composited into it (Deforum's hybrid video).

Per diffused frame, in Deforum's order: the video's motion from frame i-1 to i moves the previous
image (a RANSAC affine or perspective matrix from tracked corners, or dense optical flow scaled
by the flow factor schedule); "Before Motion" compositing; the 2D/3D warp; "Normal" compositing;
generation; "After Generation" compositing. A composite mixes the image and the video frame
through a mask (None: the video frame; Depth; Video Depth; Blend; Difference), then blends the
result over the image by the alpha schedule. Motion is measured with OpenCV on 8-bit copies;
it is applied on the device with ``grid_sample``. The previous flow is not used as a starting
guess, so a resumed run measures the same flow as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from engine.coherence import luma
from engine.depth import DepthEstimator, depth_map
from engine.flow import along_flow, check_flow_method, consistency_mask, estimate_flow
from engine.frame_params import HybridMix
from engine.images import to_array, write_image
from engine.motion import grid_from_matrix, warp
from engine.settings import HybridSettings, Settings


def hybrid_in_use(settings: Settings) -> bool:
    hybrid = settings.hybrid
    return settings.animation.animation_mode in ("2D", "3D") and (
        hybrid.hybrid_motion != "None" or hybrid.hybrid_composite != "None"
    )


def check_hybrid(settings: Settings) -> None:
    """Before the first frame: a flow method this OpenCV has."""
    if settings.hybrid.hybrid_motion == "Optical Flow":
        size = (settings.image.W, settings.image.H)
        check_flow_method(settings.hybrid.hybrid_flow_method, "hybrid.hybrid_flow_method", size)


# -- measuring motion --------------------------------------------------------------------------------


def estimate_matrix(before: np.ndarray, after: np.ndarray, kind: str) -> np.ndarray:
    """Source -> destination 3x3 matrix of the move from ``before`` to ``after`` (8-bit gray):
    corners tracked with Lucas-Kanade, then RANSAC (similarity for Affine, homography for
    Perspective). Too few corners: the identity."""
    identity = np.eye(3)
    corners = cv2.goodFeaturesToTrack(before, maxCorners=200, qualityLevel=0.01, minDistance=30, blockSize=3)
    if corners is None or len(corners) < 8:
        return identity
    tracked, status, _ = cv2.calcOpticalFlowPyrLK(before, after, corners, None)
    found = status.ravel() == 1
    if found.sum() < 8:
        return identity
    if kind == "Perspective":
        matrix, _ = cv2.findHomography(corners[found], tracked[found], cv2.RANSAC, 5.0)
        return identity if matrix is None else matrix
    matrix, _ = cv2.estimateAffinePartial2D(corners[found], tracked[found])
    return identity if matrix is None else np.vstack([matrix, [0.0, 0.0, 1.0]])


# -- composite masks ---------------------------------------------------------------------------------


def equalize(mask: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation over 256 levels (as PIL's ImageOps.equalize)."""
    levels = (mask.clamp(0, 1) * 255).round().long()
    counts = torch.bincount(levels.flatten(), minlength=256).float()
    cdf = counts.cumsum(0)
    lowest = cdf[counts > 0][0]
    if cdf[-1] == lowest:
        return mask
    return ((cdf - lowest) / (cdf[-1] - lowest)).clamp(0, 1)[levels]


def contrast(mask: torch.Tensor, amount: float) -> torch.Tensor:
    """Away from (or towards) the mask's mean by ``amount`` (as PIL's ImageEnhance.Contrast)."""
    mean = mask.mean()
    return (mean + amount * (mask - mean)).clamp(0, 1)


def auto_contrast(mask: torch.Tensor, low_percent: float, high_percent: float) -> torch.Tensor:
    """Stretch the ``low_percent``..``high_percent`` percentiles to 0..1."""
    flat = mask.flatten().float()
    low, high = torch.quantile(flat, low_percent / 100.0), torch.quantile(flat, high_percent / 100.0)
    return ((mask - low) / (high - low).clamp_min(1e-6)).clamp(0, 1)


def nearness(depth: torch.Tensor) -> torch.Tensor:
    """Depth (H, W) -> (1, 1, H, W) mask, white near and black far."""
    low, span = depth.amin(), (depth.amax() - depth.amin()).clamp_min(1e-6)
    return (1.0 - (depth - low) / span).view(1, 1, *depth.shape)


# -- the run's hybrid video --------------------------------------------------------------------------


class HybridVideo:
    """The hybrid video of one run: its frames (or the init image), their motion, the composites."""

    def __init__(
        self,
        settings: Settings,
        source: Callable[[int], torch.Tensor],
        depth_model: DepthEstimator | None,
        extra_frames: Path | None,
    ) -> None:
        self.options: HybridSettings = settings.hybrid
        self.midas_weight = settings.depth.midas_weight
        self.source = source
        self.depth_model = depth_model
        self.extra_frames = extra_frames  # where the masks and composites go when asked to save them

    # motion

    def move(self, image: torch.Tensor, frame: int, flow_factor: float) -> torch.Tensor:
        """``image`` moved as the video moves from frame - 1 to ``frame``."""
        kind = self.options.hybrid_motion
        if kind == "None" or frame == 0:
            return image
        before = self._eight_bit(image) if self.options.hybrid_motion_use_prev_img else self._eight_bit(frame - 1)
        after = self._eight_bit(frame)
        height, width = image.shape[-2:]
        if kind in ("Affine", "Perspective"):
            gray = [cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY) for picture in (before, after)]
            grid = grid_from_matrix(estimate_matrix(*gray, kind), width, height, image.device)
            return warp(image, grid.to(image.dtype), border="replicate")
        method = self.options.hybrid_flow_method
        flow = estimate_flow(before, after, method, image.device)
        if self.options.hybrid_flow_consistency:
            backward = estimate_flow(after, before, method, image.device)
            flow = flow * consistency_mask(flow, backward, self.options.hybrid_consistency_blur)[..., None]
        return along_flow(image, torch.from_numpy(np.ascontiguousarray(flow)).to(image.device), flow_factor)

    def _eight_bit(self, picture: torch.Tensor | int) -> np.ndarray:
        return to_array(self.source(picture) if isinstance(picture, int) else picture)

    # compositing

    def composite(self, image: torch.Tensor, frame: int, mix: HybridMix) -> torch.Tensor:
        """The video frame mixed into ``image`` through the mask, then blended by the alpha schedule."""
        video = self.source(frame)
        mask = self._mask(image, video, mix)
        mixed = video if mask is None else mask * image + (1 - mask) * video
        blended = image + mix.alpha * (mixed - image)
        if self.options.hybrid_comp_save_extra_frames and self.extra_frames is not None:
            self.extra_frames.mkdir(exist_ok=True)
            for name, picture in (("mask", mask), ("composite", mixed), ("blend", blended)):
                if picture is not None:
                    write_image(picture.expand(1, 3, -1, -1), self.extra_frames / f"{name}_{frame:05}.png")
        return blended

    def _mask(self, image: torch.Tensor, video: torch.Tensor, mix: HybridMix) -> torch.Tensor | None:
        options, kind = self.options, self.options.hybrid_comp_mask_type
        if kind == "None":
            return None
        if kind in ("Depth", "Video Depth"):
            mask = nearness(depth_map(self.depth_model, image if kind == "Depth" else video, self.midas_weight))
        elif kind == "Blend":
            mask = torch.lerp(luma(image), luma(video), mix.mask_blend_alpha)
        else:  # Difference
            mask = (luma(image) - luma(video)).abs()
        if options.hybrid_comp_mask_inverse:
            mask = 1 - mask
        if options.hybrid_comp_mask_equalize in ("Before", "Both"):
            mask = equalize(mask)
        mask = contrast(mask, mix.mask_contrast)
        if options.hybrid_comp_mask_auto_contrast:
            mask = auto_contrast(mask, mix.cutoff_low, mix.cutoff_high)
        if options.hybrid_comp_mask_equalize in ("After", "Both"):
            mask = equalize(mask)
        return mask
