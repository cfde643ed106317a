"""One frame's camera move applied to a picture: 2D or 3D as the settings' mode says."""

from __future__ import annotations

import torch

from engine.frame_params import Motion2D, Motion3D
from engine.motion import warp_2d, warp_3d
from engine.settings import Settings


def move_camera(
    image: torch.Tensor, settings: Settings, motion: Motion2D | Motion3D, depth: torch.Tensor | None = None
) -> torch.Tensor:
    """``image`` after the frame's ``motion`` (``depth``: 3D's depth map, None for flat)."""
    if isinstance(motion, Motion3D):
        options = settings.depth
        return warp_3d(image, motion, depth, padding=options.padding_mode, sampling=options.sampling_mode)
    return warp_2d(image, motion, border=settings.animation.border)
