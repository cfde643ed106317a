"""Every number one frame needs, typed: what the plan gives the frame step, offline and live.

The plan builds a :class:`FrameParams` per frame (``Plan.frame`` from its per-frame arrays,
``Plan.frame_at`` from a live clock and the newest audio values); the frame step and the render
modes read nothing else of the schedules.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from engine.prompts import FramePrompt


@dataclass(frozen=True)
class Motion2D:
    """One frame's 2D motion (the schedule values at that frame)."""

    angle: float = 0.0
    zoom: float = 1.0
    translation_x: float = 0.0
    translation_y: float = 0.0
    center_x: float = 0.5
    center_y: float = 0.5
    perspective: tuple[float, float, float, float] | None = None  # theta, phi, gamma, fv in degrees


@dataclass(frozen=True)
class Motion3D:
    """One frame's 3D camera move (the schedule values at that frame)."""

    translation_x: float = 0.0
    translation_y: float = 0.0
    translation_z: float = 0.0
    rotation_x: float = 0.0  # degrees
    rotation_y: float = 0.0
    rotation_z: float = 0.0
    fov: float = 70.0  # degrees
    aspect: float = 1.0


def unit(value: float) -> float:
    """``value`` clamped to [0, 1]: the one place a strength is clamped."""
    return min(max(float(value), 0.0), 1.0)


@dataclass(frozen=True)
class Unsharp:
    """Deforum's anti-blur at one frame (threshold in 0..255 units)."""

    kernel: int
    sigma: float
    amount: float
    threshold: float


@dataclass(frozen=True)
class HybridMix:
    """The hybrid video's schedules at one frame."""

    flow_factor: float
    alpha: float
    mask_blend_alpha: float
    mask_contrast: float
    cutoff_low: float
    cutoff_high: float


@dataclass(frozen=True)
class ControlValues:
    """One ControlNet unit's schedules at one frame (start and end: shares of the steps)."""

    weight: float
    start: float
    end: float


@dataclass(frozen=True)
class FrameParams:
    """One frame's values. ``strength`` is Deforum's (the share of the init kept), in [0, 1]."""

    frame: int
    seed: int
    prompt: FramePrompt
    strength: float
    cfg: float
    steps: int
    sampler: str
    subseed: int  # -1: off
    subseed_strength: float
    noise_multiplier: float
    ddim_eta: float
    clip_skip: int
    noise: float  # the grain's amount
    contrast: float
    unsharp: Unsharp
    motion: Motion2D | Motion3D
    hybrid: HybridMix
    guidance: dict[str, float]  # gradient-conditioning scale name -> its value here
    cadence_flow_factor: float  # how far the in-betweens move along the measured flow
    redo_flow_factor: float  # how far the optical-flow redo moves its trial
    controlnet: tuple[ControlValues, ...]  # each [[controlnet]] unit's values, in order
    mask: str  # the mask schedule's expression here (see engine.masks)
    noise_mask: str  # the noise mask schedule's

    def overridden(
        self, *, strength: float | None = None, cfg: float | None = None, prompt: FramePrompt | None = None
    ) -> FrameParams:
        """These values with the live quick controls' overrides (None: the schedule's)."""
        changes = {"strength": unit(strength)} if strength is not None else {}
        changes |= {"cfg": float(cfg)} if cfg is not None else {}
        changes |= {"prompt": prompt} if prompt is not None else {}
        return dataclasses.replace(self, **changes) if changes else self
