"""The one interface every backend implements: a request in, an image out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from engine.controlnet import ControlInput
from engine.errors import DriftwaveError
from engine.guidance import GuidanceRequest
from engine.prompts import FramePrompt


class ModelLoadError(DriftwaveError):
    """The configured model cannot be loaded (missing, unreachable, wrong format)."""


@dataclass
class GenerationRequest:
    """One image to make. ``strength`` is Deforum's, in [0, 1]: the share of ``init`` kept (0 = a
    new image)."""

    prompt: FramePrompt  # with A1111 prompt editing, prompt.by_step(steps) gives the text of each step
    seed: int
    width: int
    height: int
    steps: int = 25
    cfg: float = 7.0
    sampler: str = "euler_a"
    init: torch.Tensor | None = None  # (1, 3, H, W) in [0, 1]
    strength: float = 0.0
    mask: torch.Tensor | None = None  # (1, 1, H, W): 1 keeps the init, 0 diffuses
    noise_multiplier: float = 1.0
    ddim_eta: float = 0.0
    clip_skip: int = 1
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from: tuple[int, int] = (0, 0)  # (W, H) the seed's noise is made at; 0 = the image's size
    tiling: bool = False  # seamless: every convolution pads circularly
    threshold: tuple[float, float] = (0.0, 0.0)  # (dynamic percentile, static max); 0 = off
    guidance: GuidanceRequest | None = None  # gradient conditioning of this frame
    controls: tuple[ControlInput, ...] = ()  # the ControlNet units steering this frame

    @property
    def denoise(self) -> float:
        """The share of the picture diffusion repaints: 1 - strength (diffusers' ``strength``)."""
        return 1.0 - self.strength


class Backend(Protocol):
    name: str  # what produced the frames, recorded in settings.toml
    device: torch.device

    def generate(self, request: GenerationRequest) -> torch.Tensor:
        """The image, (1, 3, H, W) in [0, 1] on ``device``."""
        ...

    def load_controlnets(self, models: dict[str, str], *, skip_unloadable: bool = False) -> None:
        """Before the first frame: load the ControlNets ``models`` names (model -> its field);
        one that cannot be loaded raises, or with ``skip_unloadable`` is left out with a notice."""
        ...
