"""Frame-to-frame coherence, all in torch on the render device.

Colour matching to a reference frame (histogram matching in LAB, HSV or RGB), grayscale,
Deforum's contrast (a plain multiply), grain (gaussian or perlin-shaped) and the anti-blur
unsharp mask. Images are (1, 3, H, W) in [0, 1].
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

# -- colour spaces ----------------------------------------------------------------------------

_RGB_TO_XYZ = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_WHITE = torch.tensor([0.950456, 1.0, 1.088754])
_EPSILON = (6 / 29) ** 3
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
    batch, _, height, width = rgb.shape
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = _mix(_TO_XYZ, linear.reshape(batch, 3, -1))
    f = torch.where(xyz > _EPSILON, xyz.clamp_min(_EPSILON) ** (1 / 3), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return (_mix(_F_TO_LAB, f) + _LAB_OFFSET.to(f)).view(batch, 3, height, width)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    batch, _, height, width = lab.shape
    f = _mix(_LAB_TO_F, lab.reshape(batch, 3, -1) - _LAB_OFFSET.to(lab))
    xyz = torch.where(f > 6 / 29, f * f * f, 3 * (6 / 29) ** 2 * (f - 4 / 29))
    linear = _mix(_TO_LINEAR, xyz).clamp_(0, 1)
    rgb = torch.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear.clamp_min(0.0031308) ** (1 / 2.4) - 0.055)
    return rgb.view(batch, 3, height, width)


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


def interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """``numpy.interp`` for 1-D ``xp``/``fp`` (xp increasing), on any device."""
    index = torch.searchsorted(xp, x).clamp(1, len(xp) - 1)
    x0, x1 = xp[index - 1], xp[index]
    y0, y1 = fp[index - 1], fp[index]
    w = ((x - x0) / torch.where(x1 > x0, x1 - x0, torch.ones_like(x1))).clamp(0, 1)
    return y0 + w * (y1 - y0)


_SUBDIVISIONS = 16  # lookup entries per histogram bin: the per-pixel step is one gather


def _bin_mapping(source_cdf: torch.Tensor, reference_cdf: torch.Tensor, low: float, step: float) -> torch.Tensor:
    """Each source bin's centre -> the reference value at the same quantile."""
    bins = len(source_cdf)
    zero = source_cdf.new_zeros(1)
    # the reference's quantile function: its CDF rises across each non-empty bin (values spread
    # evenly inside a bin) and is flat over empty ones, which it must skip
    filled = reference_cdf > torch.cat([zero, reference_cdf[:-1]])
    upper_edges = low + step * (torch.arange(bins, device=source_cdf.device, dtype=torch.float32) + 1)
    first_value = upper_edges[filled][:1] - step
    quantiles = torch.cat([zero, reference_cdf[filled]])
    values = torch.cat([first_value, upper_edges[filled]])
    middle_quantiles = (source_cdf + torch.cat([zero, source_cdf[:-1]])) / 2  # at each source bin's centre
    return interp(middle_quantiles, quantiles, values)


def _lookup_table(mapping: torch.Tensor) -> torch.Tensor:
    """The bin mapping, linear between bin centres, at the centres of ``_SUBDIVISIONS`` cells a bin."""
    bins = len(mapping)
    fine = torch.arange(bins * _SUBDIVISIONS, device=mapping.device, dtype=torch.float32)
    position = ((fine + 0.5) / _SUBDIVISIONS - 0.5).clamp(0, bins - 1)
    lower = position.floor().long().clamp(max=max(bins - 2, 0))
    upper = (lower + 1).clamp(max=bins - 1)
    return torch.lerp(mapping[lower], mapping[upper], position - lower)


def _cdf(counts: torch.Tensor) -> torch.Tensor:
    cumulative = torch.cumsum(counts.float(), 0)
    return cumulative / cumulative[-1]


def _fine_index(values: torch.Tensor, low: float, high: float, bins: int) -> torch.Tensor:
    """Each value's lookup cell (``_SUBDIVISIONS`` per histogram bin), range ends included."""
    cells = bins * _SUBDIVISIONS
    return ((values.reshape(-1).float() - low) * (cells / (high - low))).clamp_(0, cells - 1).long()


def _histogram(index: torch.Tensor, bins: int) -> torch.Tensor:
    return torch.bincount(index, minlength=bins * _SUBDIVISIONS).view(bins, _SUBDIVISIONS).sum(1)


def match_channel(
    source: torch.Tensor,
    reference: torch.Tensor,
    bins: int = 256,
    *,
    reference_cdf: torch.Tensor | None = None,
    low: float | None = None,
    high: float | None = None,
) -> torch.Tensor:
    """Map ``source`` values so their histogram matches ``reference``'s (per channel).

    ``reference_cdf`` with its ``low``/``high`` range may be passed in when the reference is
    reused frame after frame (see :class:`ColorReference`). Per pixel this is one lookup in a
    table of ``bins × 16`` entries built from the two histograms.
    """
    if low is None or high is None:
        low = torch.minimum(source.min(), reference.min()).item()
        high = torch.maximum(source.max(), reference.max()).item()
    if high <= low:
        return source.clone()
    index = _fine_index(source, low, high, bins)
    if reference_cdf is None:
        reference_cdf = _cdf(_histogram(_fine_index(reference, low, high, bins), bins))
    mapping = _bin_mapping(_cdf(_histogram(index, bins)), reference_cdf, low, (high - low) / bins)
    return _lookup_table(mapping)[index].reshape(source.shape).to(source.dtype)


class ColorReference:
    """A colour-coherence reference frame, converted and measured once for the whole run."""

    BINS = 256

    def __init__(self, reference: torch.Tensor, space: str) -> None:
        self.space = space
        self.image = reference
        forward, self._backward = _SPACES[space]
        self._forward = forward
        converted = forward(reference)
        self.ranges = [_channel_range(space, c, converted[:, c]) for c in range(3)]
        self.cdfs = [
            _cdf(_histogram(_fine_index(converted[:, c], *self.ranges[c], self.BINS), self.BINS)) for c in range(3)
        ]

    def match(self, image: torch.Tensor) -> torch.Tensor:
        source = self._forward(image)
        matched = torch.stack(
            [
                match_channel(
                    source[:, c],
                    source[:, c],
                    self.BINS,
                    reference_cdf=self.cdfs[c],
                    low=self.ranges[c][0],
                    high=self.ranges[c][1],
                )
                for c in range(3)
            ],
            dim=1,
        )
        return self._backward(matched).clamp(0, 1)


def _channel_range(space: str, channel: int, values: torch.Tensor) -> tuple[float, float]:
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
) -> torch.Tensor:
    """Deforum's grain (``noise.add_noise``): the frame blended, by ``amount``, with a noise image
    (``cv2.addWeighted(frame, 1 - amount, noise, amount)``). ``perlin_cells`` = (perlin_w, perlin_h)."""
    if amount == 0:
        return image
    noise = _noise_image(seed, tuple(image.shape[1:]), kind, tuple(perlin_cells), octaves, persistence)
    return torch.lerp(image, noise.to(image).unsqueeze(0), amount).clamp_(0, 1)


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
