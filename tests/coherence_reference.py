"""The straightforward forms of engine.coherence's fast paths, as they were written before
(per-corner perlin at pixel corners, per-pixel histogram interpolation, depthwise convolution
blur): the fast paths must give their values."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def perlin(height: int, width: int, res: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    rows, cols = max(math.ceil(res[0]), 1), max(math.ceil(res[1]), 1)
    angles = 2 * math.pi * torch.rand(rows + 1, cols + 1, generator=generator)
    gradients = torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)
    u = torch.arange(height, dtype=torch.float32) * (rows / height)
    v = torch.arange(width, dtype=torch.float32) * (cols / width)
    i0, j0 = u.floor().long().clamp(max=rows - 1), v.floor().long().clamp(max=cols - 1)
    fu, fv = (u - i0).unsqueeze(1), (v - j0).unsqueeze(0)

    def corner(di: int, dj: int) -> torch.Tensor:
        g = gradients.index_select(0, i0 + di).index_select(1, j0 + dj)
        return g[..., 0] * (fu - di) + g[..., 1] * (fv - dj)

    def fade(t: torch.Tensor) -> torch.Tensor:
        return t * t * t * (t * (t * 6 - 15) + 10)

    across = fade(fv)
    top = torch.lerp(corner(0, 0), corner(0, 1), across)
    bottom = torch.lerp(corner(1, 0), corner(1, 1), across)
    return math.sqrt(2) * torch.lerp(top, bottom, fade(fu))


def perlin_octaves(height, width, res, octaves, persistence, generator) -> torch.Tensor:
    noise = torch.zeros(height, width)
    frequency, amplitude = 1.0, 1.0
    for _ in range(octaves):
        noise += amplitude * perlin(height, width, (res[0] * frequency, res[1] * frequency), generator)
        frequency, amplitude = frequency * 2, amplitude * persistence
    return noise


def _cdf(values: torch.Tensor, low: float, high: float, bins: int) -> torch.Tensor:
    counts = torch.histc(values.float(), bins, low, high)
    cumulative = torch.cumsum(counts, 0)
    return cumulative / cumulative[-1]


def match_channel(source: torch.Tensor, reference: torch.Tensor, low: float, high: float, bins: int = 256):
    step = (high - low) / bins
    source_cdf = _cdf(source.clamp(low, high), low, high, bins)
    reference_cdf = _cdf(reference.clamp(low, high), low, high, bins)
    zero = torch.zeros(1)
    filled = reference_cdf > torch.cat([zero, reference_cdf[:-1]])
    upper_edges = low + step * (torch.arange(bins, dtype=torch.float32) + 1)
    first_value = upper_edges[filled][:1] - step
    quantiles = torch.cat([zero, reference_cdf[filled]])
    values = torch.cat([first_value, upper_edges[filled]])
    middle_quantiles = (source_cdf + torch.cat([zero, source_cdf[:-1]])) / 2
    mapping = torch.from_numpy(np.interp(middle_quantiles.numpy(), quantiles.numpy(), values.numpy())).float()
    position = ((source.reshape(-1).float() - low) / step - 0.5).clamp(0, bins - 1)
    lower = position.floor().long().clamp(max=bins - 2)
    fraction = position - lower
    mapped = mapping[lower] + fraction * (mapping[(lower + 1).clamp(max=bins - 1)] - mapping[lower])
    return mapped.reshape(source.shape)


def gaussian_blur(image: torch.Tensor, kernel: int, sigma: float) -> torch.Tensor:
    kernel = max(int(kernel) // 2 * 2 + 1, 1)
    if kernel == 1:
        return image
    if sigma <= 0:
        sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8
    x = torch.arange(kernel, dtype=image.dtype) - kernel // 2
    weights = torch.exp(-(x**2) / (2 * sigma**2))
    weights = weights / weights.sum()
    channels = image.shape[1]
    pad = kernel // 2
    mode = "reflect" if min(image.shape[-2:]) > pad else "replicate"
    padded = F.pad(image, (pad, pad, pad, pad), mode=mode)
    horizontal = weights.view(1, 1, 1, kernel).repeat(channels, 1, 1, 1)
    vertical = weights.view(1, 1, kernel, 1).repeat(channels, 1, 1, 1)
    return F.conv2d(F.conv2d(padded, horizontal, groups=channels), vertical, groups=channels)
