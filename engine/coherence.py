"""Frame-to-frame coherence, all in torch on the render device.

Colour matching to a reference frame (histogram matching in LAB, HSV or RGB), grayscale,
Deforum's contrast (a plain multiply), grain (gaussian or perlin-shaped) and the anti-blur
unsharp mask. Images are (1, 3, H, W) in [0, 1].
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

# -- colour spaces ----------------------------------------------------------------------------

_RGB_TO_XYZ = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_WHITE = torch.tensor([0.950456, 1.0, 1.088754])
_EPSILON = (6 / 29) ** 3
_KNEE = 0.04045  # sRGB's curve: linear up to here, a 2.4 power above
_TO_XYZ = _RGB_TO_XYZ / _WHITE.view(3, 1)  # white-normalised XYZ
_TO_LINEAR = torch.linalg.inv(_RGB_TO_XYZ) * _WHITE.view(1, 3)
_F_TO_LAB = torch.tensor([[0.0, 116.0, 0.0], [500.0, -500.0, 0.0], [0.0, 200.0, -200.0]])
_LAB_TO_F = torch.linalg.inv(_F_TO_LAB)
_LAB_OFFSET = torch.tensor([-16.0, 0.0, 0.0]).view(3, 1)


def _mix(matrix: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """A 3x3 colour matrix applied to (B, 3, N) pixels."""
    return torch.matmul(matrix.to(pixels), pixels)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] -> CIE L*a*b* (D65): L in [0, 100]."""
    if rgb.device.type == "cpu" and rgb.dtype == torch.float32:
        lab = np.matmul(_F_TO_LAB_NP, _lab_f(_planes(rgb)))
        lab += _LAB_OFFSET_NP
        return torch.from_numpy(lab).view(rgb.shape)
    batch, _, height, width = rgb.shape
    linear = torch.where(rgb <= _KNEE, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = _mix(_TO_XYZ, linear.reshape(batch, 3, -1))
    f = torch.where(xyz > _EPSILON, xyz.clamp_min(_EPSILON) ** (1 / 3), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return (_mix(_F_TO_LAB, f) + _LAB_OFFSET.to(f)).view(batch, 3, height, width)


_SRGB_SCALE = 1.055**-2.4  # ((x + 0.055) / 1.055) ** 2.4 = _SRGB_SCALE * (x + 0.055) ** 2.4
_F_SLOPE = 1 / (3 * (6 / 29) ** 2)  # f(t) below epsilon: t * _F_SLOPE + 4 / 29
_TO_XYZ_NP = (_TO_XYZ * _SRGB_SCALE).numpy().astype(np.float32)
_F_TO_LAB_NP = _F_TO_LAB.numpy().astype(np.float32)
# LAB = _F_TO_LAB_NP @ _lab_f(rgb) + this: _lab_f leaves out f's constant - epsilon * _F_SLOPE
_LAB_OFFSET_NP = (_LAB_OFFSET - _F_TO_LAB.sum(1, keepdim=True) * (_EPSILON * _F_SLOPE)).numpy().astype(np.float32)


def _planes(image: torch.Tensor) -> np.ndarray:
    """A (B, C, H, W) CPU tensor as numpy (no copy when contiguous)."""
    return image.contiguous().numpy()


def _lab_f(rgb: np.ndarray) -> np.ndarray:
    """LAB's f(X/Xn), f(Y), f(Z/Zn) less a constant (folded into ``_LAB_OFFSET_NP``) of
    (B, 3, H, W) float32 sRGB, as (B, 3, H * W), within 1e-4 of the torch form, in 11 passes
    over the frame. Each two-piece curve is branch-free: the upper piece at max(x, knee) plus
    the lower piece's slope times (min(x, knee) - knee), as the pieces meet at the knee
    (``np.where`` costs more than all the rest; OpenCV's float RGB2Lab reads a table and is
    0.3 off). The sRGB curve's scale is in ``_TO_XYZ_NP``."""
    import cv2

    rows = rgb.reshape(-1, rgb.shape[-1])  # OpenCV takes two dimensions and splits its work by rows
    linear = np.add(rows, np.float32(0.055))
    np.maximum(linear, np.float32(_KNEE + 0.055), out=linear)
    cv2.pow(linear, 2.4, dst=linear)
    below = np.minimum(rows, np.float32(_KNEE))
    below -= np.float32(_KNEE)
    cv2.scaleAdd(below, 1 / (12.92 * _SRGB_SCALE), linear, dst=linear)
    pixels = linear.reshape(*rgb.shape[:2], -1)
    xyz = np.matmul(_TO_XYZ_NP, pixels).reshape(rows.shape)
    f = np.maximum(xyz, np.float32(_EPSILON))
    cv2.pow(f, 1 / 3, dst=f)  # numpy's float32 cbrt is 25x slower
    np.minimum(xyz, np.float32(_EPSILON), out=xyz)
    cv2.scaleAdd(xyz, _F_SLOPE, f, dst=f)
    return f.reshape(pixels.shape)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIE L*a*b* -> sRGB in [0, 1]; out-of-gamut colours clipped in linear RGB."""
    if lab.device.type == "cpu" and lab.dtype == torch.float32:
        return _lab_to_rgb_opencv(lab)
    return _lab_to_rgb_torch(lab)


def _lab_to_rgb_torch(lab: torch.Tensor) -> torch.Tensor:
    batch, _, height, width = lab.shape
    f = _mix(_LAB_TO_F, lab.reshape(batch, 3, -1) - _LAB_OFFSET.to(lab))
    xyz = torch.where(f > 6 / 29, f * f * f, 3 * (6 / 29) ** 2 * (f - 4 / 29))
    linear = _mix(_TO_LINEAR, xyz).clamp_(0, 1)
    rgb = torch.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear.clamp_min(0.0031308) ** (1 / 2.4) - 0.055)
    return rgb.view(batch, 3, height, width)


def _lab_to_rgb_opencv(lab: torch.Tensor) -> torch.Tensor:
    """The same conversion by OpenCV's float path (within 1e-4 of the torch form, out of gamut
    too): on the CPU several times faster."""
    import cv2

    from engine.images import through_opencv

    return through_opencv(lab, lambda pixels: cv2.cvtColor(pixels, cv2.COLOR_Lab2RGB))


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] -> HSV with hue in [0, 1)."""
    maximum, argmax = rgb.max(dim=1)
    minimum = rgb.min(dim=1).values
    delta = maximum - minimum
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.stack([((g - b) / safe) % 6, (b - r) / safe + 2, (r - g) / safe + 4], dim=1)
    hue = torch.gather(hue, 1, argmax.unsqueeze(1)).squeeze(1) / 6
    hue = torch.where(delta > 0, hue, torch.zeros_like(hue))
    saturation = torch.where(maximum > 0, delta / torch.where(maximum > 0, maximum, torch.ones_like(maximum)), 0)
    return torch.stack([hue % 1.0, saturation, maximum], dim=1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    h, s, v = hsv[:, 0] % 1.0, hsv[:, 1].clamp(0, 1), hsv[:, 2].clamp(0, 1)
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], dim=1)
    return v.unsqueeze(1) - (v * s).unsqueeze(1) * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


_SPACES = {
    "LAB": (rgb_to_lab, lab_to_rgb),
    "HSV": (rgb_to_hsv, hsv_to_rgb),
    "RGB": (lambda x: x, lambda x: x),
}


# -- histogram matching ------------------------------------------------------------------------


_SUBDIVISIONS = 16  # lookup entries per histogram bin: the per-pixel step is one gather


def _bin_mapping(source_cdf: np.ndarray, reference_cdf: np.ndarray, low: float, step: float) -> np.ndarray:
    """Each source bin's centre -> the reference value at the same quantile."""
    # the reference's quantile function: its CDF rises across each non-empty bin (values spread
    # evenly inside a bin) and is flat over empty ones, which it must skip
    filled = reference_cdf > np.concatenate([[0.0], reference_cdf[:-1]])
    upper_edges = low + step * (np.arange(len(source_cdf)) + 1)
    quantiles = np.concatenate([[0.0], reference_cdf[filled]])
    values = np.concatenate([upper_edges[filled][:1] - step, upper_edges[filled]])
    middle_quantiles = (source_cdf + np.concatenate([[0.0], source_cdf[:-1]])) / 2  # at each source bin's centre
    return np.interp(middle_quantiles, quantiles, values)


def _lookup_table(mapping: np.ndarray) -> np.ndarray:
    """The bin mapping, linear between bin centres, at the centres of ``_SUBDIVISIONS`` cells a bin."""
    bins = len(mapping)
    position = ((np.arange(bins * _SUBDIVISIONS) + 0.5) / _SUBDIVISIONS - 0.5).clip(0, bins - 1)
    return np.interp(position, np.arange(bins), mapping)


def _cdf(counts: torch.Tensor) -> np.ndarray:
    """Per-row cumulative share of ``counts`` (channels, bins), in float64."""
    cumulative = np.cumsum(counts.cpu().numpy(), -1, dtype=np.float64)
    return cumulative / cumulative[..., -1:]


class ColorReference:
    """A colour-coherence reference frame, converted and measured once for the whole run.

    Matching maps every channel of a frame so its histogram (``BINS`` bins over the channel's
    fixed range) matches the reference's. Per pixel that is one lookup, for the three channels
    at once, in a table of ``BINS × 16`` entries a channel built from the two histograms.
    """

    BINS = 256
    CELLS = BINS * _SUBDIVISIONS

    def __init__(self, reference: torch.Tensor, space: str) -> None:
        self.space = space
        self.image = reference
        self._forward, self._backward = _SPACES[space]
        ranges = [_channel_range(space, c) for c in range(3)]
        self._lows = [low for low, _ in ranges]
        self._steps = [(high - low) / self.BINS for low, high in ranges]
        device = reference.device
        self._low = torch.tensor(self._lows, device=device).view(1, 3, 1, 1)
        self._scale = torch.tensor([self.CELLS / (high - low) for low, high in ranges], device=device).view(1, 3, 1, 1)
        self._offset = (torch.arange(3, device=device) * self.CELLS).view(1, 3, 1, 1)
        if space == "LAB":  # on the CPU, cells straight from LAB's f(t): its matrix and the scaling in one
            scale = self._scale.view(3, 1).cpu().numpy()
            self._f_to_cells = (scale * _F_TO_LAB_NP).astype(np.float32)
            self._cell_bias = (scale * (_LAB_OFFSET_NP - self._low.view(3, 1).cpu().numpy())).astype(np.float32)
            self._channel_starts = self._offset.view(3, 1).cpu().numpy().astype(np.float32)
        self.cdfs = _cdf(self._histograms(self._cells(reference)))

    def _cells(self, image: torch.Tensor) -> torch.Tensor:
        """Each pixel's lookup cell per channel, offset per channel into one table of 3 × CELLS entries."""
        if self.space == "LAB" and image.device.type == "cpu" and image.dtype == torch.float32:
            cells = np.matmul(self._f_to_cells, _lab_f(_planes(image)))
            cells += self._cell_bias
            np.clip(cells, 0, self.CELLS - 1, out=cells)
            cells += self._channel_starts  # rounds up a cell only from within 2**-12 of it, never past the last
            return torch.from_numpy(cells.astype(np.int64)).view(image.shape)
        cells = self._forward(image).float().sub(self._low).mul_(self._scale).clamp_(0, self.CELLS - 1).long()
        return cells.add_(self._offset)

    def _histograms(self, cells: torch.Tensor) -> torch.Tensor:
        counts = torch.bincount(cells.reshape(-1), minlength=3 * self.CELLS)
        return counts.view(3, self.BINS, _SUBDIVISIONS).sum(-1)

    def match(self, image: torch.Tensor) -> torch.Tensor:
        cells = self._cells(image)
        source_cdfs = _cdf(self._histograms(cells))
        tables = [
            _lookup_table(_bin_mapping(source_cdfs[c], self.cdfs[c], self._lows[c], self._steps[c])) for c in range(3)
        ]
        table = torch.from_numpy(np.concatenate(tables).astype(np.float32)).to(image.device)
        return self._backward(torch.take(table, cells).to(image.dtype)).clamp_(0, 1)


def _channel_range(space: str, channel: int) -> tuple[float, float]:
    """The fixed value range of a channel, so frames and reference share bins."""
    if space == "LAB":
        return (0.0, 100.0) if channel == 0 else (-128.0, 128.0)
    return (0.0, 1.0)


def match_colors(image: torch.Tensor, reference: torch.Tensor, space: str) -> torch.Tensor:
    """Histogram-match every channel of ``image`` to ``reference`` in ``space`` (LAB/HSV/RGB)."""
    return ColorReference(reference, space).match(image)


# -- per-frame adjustments -----------------------------------------------------------------------


def luma(image: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) -> (1, 1, H, W), ITU-R 601-2 (as OpenCV's and PIL's grayscale)."""
    return (0.299 * image[:, 0] + 0.587 * image[:, 1] + 0.114 * image[:, 2]).unsqueeze(1)


def grayscale(image: torch.Tensor) -> torch.Tensor:
    return luma(image).expand_as(image).clone()


def apply_contrast(image: torch.Tensor, contrast: float) -> torch.Tensor:
    """Deforum's contrast: every value times ``contrast`` (1 is neutral)."""
    return (image * contrast).clamp(0, 1)


@functools.lru_cache(maxsize=32)
def _grid_weights(size: int, cells: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(size, cells + 1) weights of each grid line along one axis: for the gradient component
    across the axis (faded bilinear weight) and along it (the same times the distance)."""
    u = torch.arange(size, dtype=torch.float32) * (cells / size)  # cell coordinates, as rand_perlin_2d's grid
    near = u.floor().long().clamp(max=cells - 1)
    offset = u - near
    fade = offset * offset * offset * (offset * (offset * 6 - 15) + 10)
    across, along = torch.zeros(size, cells + 1), torch.zeros(size, cells + 1)
    pixels = torch.arange(size)
    across[pixels, near], across[pixels, near + 1] = 1 - fade, fade
    along[pixels, near], along[pixels, near + 1] = (1 - fade) * offset, fade * (offset - 1)
    return across, along


def _perlin_factors(
    height: int, width: int, res: tuple[float, float], amplitude: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One perlin layer as ``rows @ columns.T``: each corner's gradient · offset, faded and
    blended, is separable into a row part and a column part (two matrix products)."""
    rows, cols = max(math.ceil(res[0]), 1), max(math.ceil(res[1]), 1)
    angles = 2 * math.pi * torch.rand(rows + 1, cols + 1, generator=generator)
    down_across, down_along = _grid_weights(height, rows)
    right_across, right_along = _grid_weights(width, cols)
    scale = amplitude * math.sqrt(2)
    row_part = torch.cat([down_along @ torch.cos(angles), down_across @ torch.sin(angles)], dim=1) * scale
    return row_part, torch.cat([right_across, right_along], dim=1)


def perlin(height: int, width: int, res: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """Perlin noise in about [-1, 1] with ``res`` = (cells down, cells across), any size."""
    return perlin_octaves(height, width, res, 1, 1.0, generator)


def perlin_octaves(
    height: int, width: int, res: tuple[float, float], octaves: int, persistence: float, generator: torch.Generator
) -> torch.Tensor:
    """Octaves of perlin noise, each twice the frequency at ``persistence`` times the amplitude,
    summed in one matrix product."""
    row_parts, column_parts = [], []
    frequency, amplitude = 1.0, 1.0
    for _ in range(octaves):
        row_part, column_part = _perlin_factors(
            height, width, (res[0] * frequency, res[1] * frequency), amplitude, generator
        )
        row_parts.append(row_part)
        column_parts.append(column_part)
        frequency, amplitude = frequency * 2, amplitude * persistence
    return torch.cat(row_parts, dim=1) @ torch.cat(column_parts, dim=1).T


@functools.lru_cache(maxsize=2)
def _noise_image(
    seed: int,
    shape: tuple[int, int, int],
    kind: str,
    perlin_cells: tuple[float, float],
    octaves: int,
    persistence: float,
) -> torch.Tensor:
    """Deforum's noise image for a seed, in [0, 1] (kept: a fixed seed draws it every frame).

    As ``noise.add_noise`` makes it: white noise at the size rounded down to 64, perlin-shaped
    (``perlin_w`` cells down, ``perlin_h`` across, as Deforum passes them) and scaled back up
    (nearest), mapped from [-1, 1]; channels reversed, as Deforum's frames are BGR there.
    """
    channels, height, width = shape
    generator = torch.Generator().manual_seed(seed % 2**63)
    if kind != "perlin":
        noise = torch.randn(shape, generator=generator)
    else:
        rows, columns = max(height - height % 64, 64), max(width - width % 64, 64)
        noise = torch.randn((channels, rows, columns), generator=generator)
        cells = (int(perlin_cells[0]), int(perlin_cells[1]))
        shaped = perlin_octaves(rows, columns, cells, octaves, persistence, generator)
        noise = noise.mul_(shaped.add_(1).mul_(0.5))
        if (rows, columns) != (height, width):
            noise = F.interpolate(noise.unsqueeze(1), size=(height, width)).squeeze(1)
    return noise.flip(0).mul_(0.5).add_(0.5).clamp_(0, 1)


def add_noise(
    image: torch.Tensor,
    amount: float,
    seed: int,
    *,
    kind: str = "perlin",
    perlin_cells: tuple[float, float] = (8, 8),
    octaves: int = 4,
    persistence: float = 0.5,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Deforum's grain (``noise.add_noise``): the frame blended, by ``amount``, with a noise image
    (``cv2.addWeighted(frame, 1 - amount, noise, amount)``). ``perlin_cells`` = (perlin_w, perlin_h).
    With a ``mask`` the noise is multiplied by it, so where it is black the blend is with mid-gray
    (Deforum's noise mask)."""
    if amount == 0:
        return image
    noise = _noise_image(seed, tuple(image.shape[1:]), kind, tuple(perlin_cells), octaves, persistence)
    noise = noise.to(image).unsqueeze(0)
    if mask is not None:
        noise = torch.lerp(torch.full_like(noise, 0.5), noise, mask.to(image))
    return torch.lerp(image, noise, amount).clamp_(0, 1)


def add_white_noise(image: torch.Tensor, amount: float, seed: int) -> torch.Tensor:
    """The notebook's init-image noise: white noise times ``amount`` added in [-1, 1] units."""
    if amount == 0:
        return image
    generator = torch.Generator().manual_seed(seed % 2**63)
    noise = torch.randn(image.shape[1:], generator=generator).to(image).unsqueeze(0)
    return torch.add(image, noise, alpha=amount / 2).clamp_(0, 1)


def gaussian_blur(image: torch.Tensor, kernel: int, sigma: float) -> torch.Tensor:
    """Separable gaussian blur with mirrored edges (as cv2.GaussianBlur), as shifted sums: on
    the CPU far faster than a depthwise convolution."""
    kernel = max(int(kernel) // 2 * 2 + 1, 1)
    if kernel == 1:
        return image
    if sigma <= 0:
        sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8  # OpenCV's default for a kernel size
    x = torch.arange(kernel, dtype=torch.float64) - kernel // 2
    weights = torch.exp(-(x**2) / (2 * sigma**2))
    weights = (weights / weights.sum()).tolist()
    pad = kernel // 2
    height, width = image.shape[-2:]
    if image.device.type == "cpu" and image.dtype == torch.float32 and min(height, width) > pad:
        import cv2

        from engine.images import per_plane

        return per_plane(image, lambda plane, out: cv2.GaussianBlur(plane, (kernel, kernel), sigma, dst=out))
    mode = "reflect" if min(height, width) > pad else "replicate"
    padded = F.pad(image, (pad, pad, pad, pad), mode=mode)
    rows = _symmetric_taps(padded, weights, height, dim=-2)
    return _symmetric_taps(rows, weights, width, dim=-1)


def _symmetric_taps(padded: torch.Tensor, weights: list[float], size: int, dim: int) -> torch.Tensor:
    """Σ weights[k] · padded shifted by k along ``dim``, pairing the taps of a symmetric kernel."""
    pad = len(weights) // 2
    total = padded.narrow(dim, pad, size) * weights[pad]
    for k in range(pad):
        pair = padded.narrow(dim, k, size) + padded.narrow(dim, len(weights) - 1 - k, size)
        total.add_(pair, alpha=weights[k])
    return total


def unsharp_mask(image: torch.Tensor, kernel: int, sigma: float, amount: float, threshold: float) -> torch.Tensor:
    """Deforum's anti-blur: (1 + amount)·image − amount·blurred; threshold in 0..255 units."""
    if amount == 0:
        return image
    blurred = gaussian_blur(image, kernel, sigma)
    sharpened = ((amount + 1) * image - amount * blurred).clamp(0, 1)
    if threshold > 0:
        low_contrast = (image - blurred).abs() < threshold / 255.0
        sharpened = torch.where(low_contrast, image, sharpened)
    return sharpened
