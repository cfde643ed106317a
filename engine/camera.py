"""One frame's camera move read from the settings' schedules, applied to a picture: the one
place where render and live mode turn schedule values into 2D or 3D motion."""

from __future__ import annotations

from collections.abc import Callable

import torch

from engine.motion import MOTION_3D_FIELDS, Motion2D, Motion3D, warp_2d, warp_3d
from engine.settings import Settings

PERSPECTIVE = ("theta", "phi", "gamma", "fv")


def move_camera(
    image: torch.Tensor, settings: Settings, value: Callable[[str], float], depth: torch.Tensor | None = None
) -> torch.Tensor:
    """``image`` after the frame's move; ``value(path)`` is a schedule's value at that frame
    (``depth``: 3D's depth map, None for flat)."""
    if settings.animation.animation_mode == "3D":
        options = settings.depth
        height, width = image.shape[-2:]
        aspect = width / height if options.aspect_ratio_use_old_formula else value("depth.aspect_ratio_schedule")
        motion = Motion3D(
            *(value(f"motion.{name}") for name in MOTION_3D_FIELDS), fov=value("depth.fov_schedule"), aspect=aspect
        )
        return warp_3d(image, motion, depth, padding=options.padding_mode, sampling=options.sampling_mode)
    perspective = None
    if settings.motion.enable_perspective_flip:
        perspective = tuple(value(f"motion.perspective_flip_{name}") for name in PERSPECTIVE)
    motion = Motion2D(
        angle=value("motion.angle"),
        zoom=value("motion.zoom"),
        translation_x=value("motion.translation_x"),
        translation_y=value("motion.translation_y"),
        center_x=value("motion.transform_center_x"),
        center_y=value("motion.transform_center_y"),
        perspective=perspective,
    )
    return warp_2d(image, motion, border=settings.animation.border)
