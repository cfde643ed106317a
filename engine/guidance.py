"""Gradient conditioning (Deforum's notebook guidance): image losses whose gradients steer each sampling step.

At a guided step the denoised estimate x0 = (x - sqrt(1 - a) eps) / sqrt(a) is decoded to RGB
(a linear map fitted to the model's own VAE, or the VAE itself), the weighted losses are
differentiated — with respect to x0 (``x0_pred``, cheap) or to the noisy latents through the
UNet (``x``) — the gradient is clamped (``grad_threshold_type``) and moves x0 by sigma^2 * g,
i.e. eps by -sigma * g with sigma = sqrt((1 - a) / a), as k-diffusion's guided denoisers do;
with classifier-free guidance it goes to the conditional, the unconditional or both
predictions (``gradient_add_to``). ``grad_inject_timing`` picks the steps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.errors import DriftwaveError
from engine.settings import GuidanceSettings


@dataclass
class GuidanceRequest:
    """One frame's guidance: the scales at that frame and the images the losses compare with."""

    settings: GuidanceSettings
    scales: dict[str, float]  # "mean_scale" -> value at this frame
    init_image: torch.Tensor | None = None  # (1, 3, H, W) for init_mse
    palette: torch.Tensor | None = None  # (n, 3) for colormatch
    text: str = ""  # the prompt CLIP guidance pulls towards
    seed: int = 0  # the cutouts' positions

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
    if scales.get("clip_scale") or scales.get("aesthetics_scale"):
        clip = clip_model(options.clip_name, rgb.device)
        embeddings = clip.image_embeddings(cutouts(rgb, clip.size, options.cutn, options.cut_pow, request.seed))
        if scales.get("clip_scale"):
            total = total + scales["clip_scale"] * spherical_distance(embeddings, clip.text_embedding(request.text))
        if scales.get("aesthetics_scale"):
            score = aesthetics_head(options.aesthetics_model, rgb.device)(embeddings).mean()
            total = total + scales["aesthetics_scale"] * (10.0 - score)
    return total


class Clip:
    """A CLIP model for guidance: differentiable image embeddings, cached text embeddings."""

    def __init__(self, name: str, device: str) -> None:
        from transformers import CLIPModel, CLIPTokenizer

        self.model = CLIPModel.from_pretrained(name).to(device).eval().requires_grad_(False)
        self.tokenizer = CLIPTokenizer.from_pretrained(name)
        self.size = self.model.config.vision_config.image_size
        mean, std = _clip_normalisation(name)
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)
        self.device = device
        self._texts: dict[str, torch.Tensor] = {}

    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        pixels = (images - self.mean) / self.std
        return F.normalize(_features(self.model.get_image_features(pixel_values=pixels)), dim=-1)

    def text_embedding(self, text: str) -> torch.Tensor:
        if text not in self._texts:
            tokens = self.tokenizer([text], padding="max_length", truncation=True, return_tensors="pt")
            with torch.no_grad():
                features = _features(self.model.get_text_features(input_ids=tokens.input_ids.to(self.device)))
            self._texts[text] = F.normalize(features, dim=-1)
        return self._texts[text]


def _features(output) -> torch.Tensor:
    """transformers 5 returns an output object where 4 returned the tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _clip_normalisation(name: str) -> tuple[list[float], list[float]]:
    """The checkpoint's image mean and std (OpenAI's when it does not say)."""
    import json
    from pathlib import Path

    config = Path(name) / "preprocessor_config.json"
    if config.is_file():
        data = json.loads(config.read_text())
        if "image_mean" in data and "image_std" in data:
            return data["image_mean"], data["image_std"]
    return [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


def canonical_device(device) -> str:
    """ "cuda" and "cuda:0" are one device: one cache entry."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return str(device)


def clip_model(name: str, device) -> Clip:
    """The CLIP checkpoint ``name`` (hub id or folder) on ``device``, loaded once."""
    return _clip_model(name, canonical_device(device))


@functools.lru_cache(maxsize=2)
def _clip_model(name: str, device: str) -> Clip:
    try:
        return Clip(name, device)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as error:
        raise DriftwaveError(
            f"cannot load the CLIP model {name}: {str(error).splitlines()[0]}",
            field="guidance.clip_name",
            hint="name a CLIP checkpoint transformers can load (hub id or folder), set clip_scale and "
            "aesthetics_scale to 0, or turn on skip_unloadable_guidance",
        ) from None


def aesthetics_head(path: str, device) -> torch.nn.Linear:
    """A linear aesthetics predictor on normalised CLIP image embeddings (weight, bias)."""
    return _aesthetics_head(path, canonical_device(device))


@functools.lru_cache(maxsize=2)
def _aesthetics_head(path: str, device: str) -> torch.nn.Linear:
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        weight = state["weight"] if "weight" in state else next(v for k, v in state.items() if k.endswith("weight"))
        bias = state["bias"] if "bias" in state else next(v for k, v in state.items() if k.endswith("bias"))
    except (OSError, RuntimeError, KeyError, StopIteration, TypeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DriftwaveError(
            f"cannot load the aesthetics head {path or '(none given)'}: {reason}",
            field="guidance.aesthetics_model",
            hint="give a .pth holding a linear layer's weight and bias over CLIP image embeddings, set "
            "aesthetics_scale to 0, or turn on skip_unloadable_guidance",
        ) from None
    head = torch.nn.Linear(weight.shape[1], weight.shape[0]).to(device)
    with torch.no_grad():
        head.weight.copy_(weight.reshape(head.weight.shape))
        head.bias.copy_(bias.reshape(head.bias.shape))
    return head.requires_grad_(False)


def cutouts(rgb: torch.Tensor, size: int, count: int, power: float, seed: int) -> torch.Tensor:
    """``count`` random square crops of ``rgb`` resized to ``size`` (the first the whole image):
    their sides are min + (max - min) * u ** power, so a small power gives large crops."""
    height, width = rgb.shape[-2:]
    largest, smallest = min(height, width), min(height, width, size) // 2
    generator = torch.Generator().manual_seed(seed)
    crops = [F.adaptive_avg_pool2d(rgb, size)]
    for _ in range(count - 1):
        side = int(torch.rand((), generator=generator) ** power * (largest - smallest) + smallest)
        top = int(torch.randint(0, height - side + 1, (), generator=generator))
        left = int(torch.randint(0, width - side + 1, (), generator=generator))
        crops.append(F.adaptive_avg_pool2d(rgb[..., top : top + side, left : left + side], size))
    return torch.cat(crops)


def spherical_distance(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Mean squared great-circle distance between unit vectors (Disco Diffusion's CLIP loss)."""
    return (first - second).norm(dim=-1).div(2).arcsin().pow(2).mul(2).mean()


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
