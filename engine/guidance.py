"""Gradient conditioning (seed 000): image losses whose gradients steer each sampling step.

At a guided step the denoised estimate x0 = (x - sqrt(1 - a) eps) / sqrt(a) is decoded to RGB
(a linear map fitted to the model's own VAE, or the VAE itself), the weighted losses are
differentiated — with respect to x0 (``x0_pred``, cheap) or to the noisy latents through the
UNet (``x``) — the gradient is clamped (``grad_threshold_type``) and moves x0 by sigma^2 * g,
i.e. eps by -sigma * g with sigma = sqrt((1 - a) / a), as k-diffusion's guided denoisers do;
with classifier-free guidance it goes to the conditional, the unconditional or both
predictions (``gradient_add_to``). ``grad_inject_timing`` picks the steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.settings import GuidanceSettings

SCALES = ("mean_scale", "var_scale", "exposure_scale", "colormatch_scale", "init_mse_scale", "blue_scale")


@dataclass
class GuidanceRequest:
    """One frame's guidance: the scales at that frame and the images the losses compare with."""

    settings: GuidanceSettings
    scales: dict[str, float]  # "mean_scale" -> value at this frame
    init_image: torch.Tensor | None = None  # (1, 3, H, W) for init_mse
    palette: torch.Tensor | None = None  # (n, 3) for colormatch

    @property
    def active(self) -> bool:
        return any(value != 0 for value in self.scales.values())


def guided_steps(timing, steps: int) -> set[int]:
    """The 0-based step indices that get the gradient: every N-th step (int N), step fractions
    (floats in 0..1), step numbers (1-based, as Deforum writes them) or "none" (every step)."""
    if timing == "none":
        return set(range(steps))
    if isinstance(timing, int):
        return {index for index in range(steps) if (index + 1) % max(timing, 1) == 0}
    chosen = set()
    for value in timing:
        if 0 < value < 1:
            chosen.add(min(round(value * steps), steps - 1))
        elif float(value).is_integer() and 1 <= value <= steps:
            chosen.add(int(value) - 1)
    return chosen


def losses(rgb: torch.Tensor, request: GuidanceRequest) -> torch.Tensor:
    """The weighted sum of the active losses of ``rgb`` (1, 3, h, w) in [0, 1]."""
    scales, options = request.scales, request.settings
    total = rgb.new_zeros(())
    if scales.get("mean_scale"):
        total = total + scales["mean_scale"] * (rgb - 0.5).abs().mean()
    if scales.get("var_scale"):
        total = total + scales["var_scale"] * rgb.var()
    if scales.get("exposure_scale"):
        total = total + scales["exposure_scale"] * ((rgb * 2 - 1).mean() - options.exposure_target).abs()
    if scales.get("blue_scale"):
        total = total + scales["blue_scale"] * rgb[:, 2].mean()
    if scales.get("init_mse_scale") and request.init_image is not None:
        target = F.interpolate(request.init_image.to(rgb), size=rgb.shape[-2:], mode="area")
        total = total + scales["init_mse_scale"] * F.mse_loss(rgb, target)
    if scales.get("colormatch_scale") and request.palette is not None:
        total = total + scales["colormatch_scale"] * palette_distance(rgb, request.palette, options.ignore_sat_weight)
    return total


def palette_distance(rgb: torch.Tensor, palette: torch.Tensor, ignore_saturation: float = 0.0) -> torch.Tensor:
    """Mean distance of each pixel to its nearest palette colour; ``ignore_saturation`` weighs
    down the part of the difference that is only saturation (distance from the pixel's grey)."""
    pixels = rgb.permute(0, 2, 3, 1).reshape(-1, 3)
    colours = palette.to(pixels)
    difference = pixels[:, None, :] - colours[None, :, :]  # (pixels, colours, 3)
    if ignore_saturation:
        grey = difference.mean(dim=-1, keepdim=True)
        difference = grey + (difference - grey) / (1.0 + ignore_saturation)
    return difference.norm(dim=-1).min(dim=1).values.mean()


def extract_palette(image: torch.Tensor, colours: int, *, iterations: int = 12) -> torch.Tensor:
    """``colours`` representative colours of ``image`` (k-means from evenly spread pixels)."""
    pixels = image.permute(0, 2, 3, 1).reshape(-1, 3).float()
    order = torch.argsort(pixels.sum(dim=1))
    centres = pixels[order[torch.linspace(0, len(order) - 1, colours).long()]].clone()
    for _ in range(iterations):
        nearest = torch.cdist(pixels, centres).argmin(dim=1)
        for index in range(colours):
            members = pixels[nearest == index]
            if len(members):
                centres[index] = members.mean(dim=0)
    return centres


def clamp_gradient(gradient: torch.Tensor, options: GuidanceSettings, step: int, steps: int) -> torch.Tensor:
    """Bound the gradient: dynamic (Imagen: the 99.5th percentile of |g|, at least the
    threshold, rescales), static (clip at the threshold), mean (rescale so the mean |g| is at
    most the threshold) or schedule (static, the threshold going from clamp_start to clamp_stop)."""
    threshold = options.clamp_grad_threshold
    kind = options.grad_threshold_type
    if kind == "schedule":
        share = step / max(steps - 1, 1)
        threshold = options.clamp_start + share * (options.clamp_stop - options.clamp_start)
        kind = "static"
    if kind == "static":
        return gradient.clamp(-threshold, threshold)
    if kind == "mean":
        mean = gradient.abs().mean()
        return gradient * (threshold / mean) if mean > threshold else gradient
    limit = torch.quantile(gradient.abs().flatten().float(), 0.995).clamp_min(threshold)
    return gradient.clamp(-limit, limit) * (threshold / limit)


def fit_linear_decoder(decode: Callable[[torch.Tensor], torch.Tensor], channels: int, device, dtype) -> torch.Tensor:
    """A (channels + 1, 3) map from latents (and a constant) to RGB in [0, 1], fitted by least
    squares to the model's own decoder on random latents: fast, differentiable previews."""
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(4, channels, 16, 16, generator=generator).to(device, dtype)
    with torch.no_grad():
        rgb = torch.cat([decode(latents[i : i + 1]) for i in range(len(latents))]).float()
    scale = rgb.shape[-1] // latents.shape[-1]
    target = F.avg_pool2d(rgb, scale).permute(0, 2, 3, 1).reshape(-1, 3)
    inputs = torch.cat(
        [latents.float().permute(0, 2, 3, 1).reshape(-1, channels), torch.ones(len(target), 1, device=target.device)],
        dim=1,
    )
    return torch.linalg.lstsq(inputs.cpu(), target.cpu()).solution.to(device)


def linear_decode(latents: torch.Tensor, mapping: torch.Tensor) -> torch.Tensor:
    """(1, C, h, w) latents -> (1, 3, h, w) RGB through the fitted map."""
    flat = latents.float().permute(0, 2, 3, 1)
    rgb = flat @ mapping[:-1] + mapping[-1]
    return rgb.permute(0, 3, 1, 2)
