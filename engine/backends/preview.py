"""The preview backend: no diffusion, so motion, coherence and timing can be seen at once.

The first image is a colourful pattern made from the prompt text and the seed (soft clouds
with bright discs, so zoom, turns and drift are easy to follow). After that each frame is the
warped previous frame, lightly smoothed where diffusion would repaint it (by 1 − strength),
so grain does not pile up. Nothing here pretends to be Stable Diffusion.
"""

from __future__ import annotations

import hashlib
import math

import torch

from engine.backends.base import GenerationRequest
from engine.coherence import gaussian_blur, hsv_to_rgb, perlin_octaves
from engine.errors import notify


class PreviewBackend:
    name = "preview (no diffusion: motion, coherence and noise only)"

    def __init__(self, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.said_guidance = False

    def load_controlnets(self, models: dict[str, str], *, skip_unloadable: bool = False) -> None:
        if models:
            notify("the preview backend does no diffusion: the ControlNet units have no effect")

    def generate(self, request: GenerationRequest) -> torch.Tensor:
        if request.guidance is not None and request.guidance.active and not self.said_guidance:
            self.said_guidance = True
            notify("the preview backend does no diffusion: the guidance scales have no effect")
        if request.init is None or request.strength <= 0:
            return pattern(_prompt_key(request), request.seed, request.width, request.height).to(self.device)
        init = request.init.to(self.device)
        smoothed = gaussian_blur(init, 3, 0.8)
        image = init + request.denoise * 0.5 * (smoothed - init)
        if request.mask is not None:
            image = request.mask * init + (1 - request.mask) * image
        return image.clamp(0, 1)


def _prompt_key(request: GenerationRequest) -> str:
    texts = [f"{sub.plain}:{weight:.3f}" for sub, weight in request.prompt.positive]
    return "|".join(texts) or "empty"


def pattern(text: str, seed: int, width: int, height: int) -> torch.Tensor:
    """A smooth, colourful picture determined by ``text`` and ``seed``: (1, 3, H, W)."""
    digest = hashlib.sha256(f"{text}#{seed}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
    base_hue = digest[8] / 255.0
    clouds = [perlin_octaves(height, width, (3, 3 * width / height), 5, 0.55, generator) for _ in range(3)]
    hue = (base_hue + 0.18 * clouds[0]) % 1.0
    saturation = (0.55 + 0.35 * clouds[1]).clamp(0, 1)
    value = (0.55 + 0.35 * clouds[2]).clamp(0, 1)
    image = hsv_to_rgb(torch.stack([hue, saturation, value]).unsqueeze(0))
    ys = torch.arange(height, dtype=torch.float32).view(-1, 1)
    xs = torch.arange(width, dtype=torch.float32).view(1, -1)
    for _ in range(12):
        cx, cy = torch.rand(2, generator=generator) * torch.tensor([width, height])
        radius = (0.03 + 0.06 * torch.rand(1, generator=generator).item()) * min(width, height)
        disc = torch.sigmoid((radius - torch.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)) / 1.5)
        colour = hsv_to_rgb(
            torch.tensor([(base_hue + 0.5 + 0.3 * torch.rand(1, generator=generator).item()) % 1.0, 0.8, 1.0]).view(
                1, 3, 1, 1
            )
        )
        image = image * (1 - disc) + colour * disc
    ring = 0.05 * torch.cos(2 * math.pi * torch.sqrt((xs - width / 2) ** 2 + (ys - height / 2) ** 2) / 24)
    return (image + ring).clamp(0, 1)
