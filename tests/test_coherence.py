"""Coherence: colour matching, contrast, grain, anti-blur; seeds per frame."""

from __future__ import annotations

import colorsys

import coherence_reference
import cv2
import numpy as np
import pytest
import torch
from skimage.color import rgb2lab
from skimage.exposure import match_histograms

from engine.coherence import (
    ColorReference,
    add_noise,
    apply_contrast,
    gaussian_blur,
    grayscale,
    hsv_to_rgb,
    lab_to_rgb,
    match_colors,
    perlin,
    perlin_octaves,
    rgb_to_hsv,
    rgb_to_lab,
    unsharp_mask,
)
from engine.seeds import seed_at


@pytest.fixture
def image() -> torch.Tensor:
    return torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(1))


def test_lab_matches_skimage_and_round_trips(image):
    expected = rgb2lab(image[0].permute(1, 2, 0).numpy())
    assert np.abs(rgb_to_lab(image)[0].permute(1, 2, 0).numpy() - expected).max() < 0.01
    assert (lab_to_rgb(rgb_to_lab(image)) - image).abs().max() < 1e-4


def test_the_cpu_paths_through_opencv_give_the_torch_formulas():
    """On the CPU, float32 LAB conversions and the blur go through OpenCV; float64 (as on a GPU)
    takes the torch formulas: both must agree, out of gamut too."""
    generator = torch.Generator().manual_seed(3)
    rgb = torch.rand(2, 3, 40, 56, generator=generator)
    # the pieces' meeting points too: sRGB's knee, and the colours whose XYZ is near LAB's epsilon
    edges = torch.tensor([0.0, 0.04045 - 1e-6, 0.04045, 0.04045 + 1e-6, 0.0115, 0.0125, 1.0])
    rgb[0, :, 0, : len(edges)] = edges
    assert (rgb_to_lab(rgb) - rgb_to_lab(rgb.double())).abs().max() < 2e-4
    lab = torch.stack([torch.rand(40, 56) * 100, torch.rand(40, 56) * 256 - 128, torch.rand(40, 56) * 256 - 128])
    assert (lab_to_rgb(lab[None]) - lab_to_rgb(lab[None].double())).abs().max() < 2e-4
    assert (gaussian_blur(rgb, 5, 1.0) - gaussian_blur(rgb.double(), 5, 1.0)).abs().max() < 1e-6


def test_hsv_matches_colorsys_and_round_trips(image):
    r, g, b = image[0, :, 3, 4].tolist()
    assert rgb_to_hsv(image)[0, :, 3, 4].tolist() == pytest.approx(colorsys.rgb_to_hsv(r, g, b), abs=1e-6)
    assert (hsv_to_rgb(rgb_to_hsv(image)) - image).abs().max() < 1e-5


@pytest.mark.parametrize("space", ["LAB", "HSV", "RGB"])
def test_colour_match_pulls_the_histogram_to_the_reference(space):
    drifted = (torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2)) ** 2) * torch.tensor(
        [1.0, 0.6, 0.3]
    ).view(1, 3, 1, 1)
    reference = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3)) * 0.5 + 0.3
    matched = match_colors(drifted, reference, space)
    before = (drifted.mean((2, 3)) - reference.mean((2, 3))).abs().max()
    after = (matched.mean((2, 3)) - reference.mean((2, 3))).abs().max()
    assert after < before / 5


def test_a_nearly_gray_reference_gives_nearly_gray_colours():
    # a gray ramp with a small red patch: its a/b values sit in one bin but for a few; the
    # empty bins below must not pull the darkest quantiles of the frame to the range's end
    reference = torch.linspace(0.1, 0.8, 128).view(1, 1, 1, 128).expand(1, 3, 64, 128).clone()
    reference[:, :, 20:30, 10:20] = torch.tensor([0.95, 0.2, 0.15]).view(1, 3, 1, 1)
    drifted = torch.rand(1, 3, 64, 128, generator=torch.Generator().manual_seed(6))
    matched = rgb_to_lab(match_colors(drifted, reference, "LAB")).mean((2, 3))
    assert (matched - rgb_to_lab(reference).mean((2, 3))).abs().max() < 1.0


def test_rgb_match_agrees_with_skimage_on_8bit_images():
    source = torch.round(torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(4)) ** 2 * 255) / 255
    reference = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(5)) * 0.5 + 0.3
    expected = match_histograms(
        source[0].permute(1, 2, 0).numpy(), reference[0].permute(1, 2, 0).numpy(), channel_axis=-1
    )
    ours = match_colors(source, reference, "RGB")[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - expected).mean() < 0.005


def test_grayscale_and_contrast(image):
    gray = grayscale(image)
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    assert torch.allclose(apply_contrast(torch.full((1, 3, 2, 2), 0.4), 1.5), torch.full((1, 3, 2, 2), 0.6))


def test_noise_is_seeded_and_scaled():
    grey = torch.full((1, 3, 64, 64), 0.5)
    first, again = add_noise(grey, 0.1, 7, kind="uniform"), add_noise(grey, 0.1, 7, kind="uniform")
    assert torch.equal(first, again) and not torch.equal(first, add_noise(grey, 0.1, 8, kind="uniform"))
    clipped = torch.randn(10**6, generator=torch.Generator().manual_seed(0)).clamp(-1, 1).std().item()
    assert (first - 0.5).std().item() == pytest.approx(0.1 * 0.5 * clipped, rel=0.1)  # 10 % toward the noise
    assert torch.equal(add_noise(grey, 0.0, 7), grey)


def test_perlin_noise_is_smooth_and_spans_any_size():
    field = perlin(50, 70, (4, 6), torch.Generator().manual_seed(0))
    assert field.shape == (50, 70) and field.abs().max() <= 1.5
    assert field.diff(dim=1).abs().mean() < 0.1 * field.std() * 10  # neighbours are close
    shaped = add_noise(torch.full((1, 3, 50, 70), 0.5), 0.2, 1, kind="perlin")
    assert shaped.shape == (1, 3, 50, 70)


def test_gaussian_blur_is_opencvs(image):
    expected = cv2.GaussianBlur(image[0].permute(1, 2, 0).numpy(), (5, 5), 1.0)
    assert np.abs(gaussian_blur(image, 5, 1.0)[0].permute(1, 2, 0).numpy() - expected).max() < 1e-5


def test_unsharp_mask_sharpens_edges_and_respects_threshold():
    step = torch.zeros(1, 3, 16, 16)
    step[..., 8:] = 0.8
    blurred = gaussian_blur(step, 5, 1.0)
    sharpened = unsharp_mask(blurred, 5, 1.0, 1.0, 0)
    assert (sharpened[..., 9] - sharpened[..., 6]).mean() > (blurred[..., 9] - blurred[..., 6]).mean()
    assert torch.equal(unsharp_mask(blurred, 5, 1.0, 0.0, 0), blurred)
    assert torch.equal(unsharp_mask(blurred, 5, 1.0, 1.0, 255), blurred)  # nothing passes the threshold


def deforum_next_seeds(start: int, behavior: str, n: int, count: int) -> list[int]:
    """Deforum's next_seed, stepped ``count - 1`` times (seed.py in sd-webui-deforum)."""
    seed, internal, out = start, 0, [start]
    for _ in range(count - 1):
        if behavior == "iter":
            seed += 1 if internal % n == 0 else 0
            internal += 1
        elif behavior in ("ladder", "alternate"):
            up = 2 if behavior == "ladder" else 1
            seed += up if internal == 0 else -1
            internal = 1 - internal
        out.append(seed)
    return out


@pytest.mark.parametrize("behavior", ["iter", "fixed", "ladder", "alternate"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_seed_behaviours_step_as_deforum(behavior, n):
    assert [seed_at(77, behavior, i, iter_n=n) for i in range(10)] == deforum_next_seeds(77, behavior, n, 10)


def test_random_seeds_are_reproducible_and_schedule_overrides():
    seeds = [seed_at(5, "random", i) for i in range(5)]
    assert seeds == [seed_at(5, "random", i) for i in range(5)] and len(set(seeds)) == 5 and seeds[0] == 5
    assert seed_at(5, "schedule", 3, scheduled=1234.9) == 1234
    assert seed_at(5, "schedule", 3, scheduled=-1) == seed_at(5, "random", 3)


# -- the fast paths give the straightforward forms' values ---------------------------------------


def _smooth_frame(seed: int, size: tuple[int, int] = (160, 224)) -> torch.Tensor:
    noise = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(seed))
    return coherence_reference.gaussian_blur(noise, 9, 3.0) ** torch.tensor([1.0, 1.6, 0.7]).view(1, 3, 1, 1)


@pytest.mark.parametrize(
    "size, res, octaves, persistence", [((512, 512), (8, 8), 4, 0.5), ((50, 77), (3.5, 7.2), 3, 0.7)]
)
def test_perlin_as_one_matrix_product_is_the_per_corner_form(size, res, octaves, persistence):
    fast = perlin_octaves(*size, res, octaves, persistence, torch.Generator().manual_seed(9))
    plain = coherence_reference.perlin_octaves(*size, res, octaves, persistence, torch.Generator().manual_seed(9))
    assert (fast - plain).abs().max() < 1e-5


@pytest.mark.parametrize("kind", ["perlin", "uniform"])
def test_a_repeated_seed_draws_the_same_grain_and_another_seed_another(kind):
    image = _smooth_frame(1)
    first = add_noise(image, 0.3, 11, kind=kind, perlin_cells=(6, 5), octaves=3, persistence=0.6)
    again = add_noise(image, 0.3, 11, kind=kind, perlin_cells=(6, 5), octaves=3, persistence=0.6)
    assert torch.equal(first, again) and not torch.equal(first, add_noise(image, 0.3, 12, kind=kind))


@pytest.mark.parametrize("kernel, sigma", [(5, 1.0), (3, 0.0), (11, 2.5)])
def test_blur_as_shifted_sums_is_the_convolution(kernel, sigma):
    image = _smooth_frame(2)
    assert (
        gaussian_blur(image, kernel, sigma) - coherence_reference.gaussian_blur(image, kernel, sigma)
    ).abs().max() < 1e-6
    tiny = torch.rand(1, 3, 3, 4, generator=torch.Generator().manual_seed(3))
    assert (gaussian_blur(tiny, 9, 2.0) - coherence_reference.gaussian_blur(tiny, 9, 2.0)).abs().max() < 1e-6


@pytest.mark.parametrize("space", ["LAB", "HSV", "RGB"])
def test_colour_match_by_lookup_is_within_a_level_of_per_pixel_interpolation(space):
    frame, reference = _smooth_frame(4), _smooth_frame(5) * 0.6 + 0.2
    forward, backward = {"LAB": (rgb_to_lab, lab_to_rgb), "HSV": (rgb_to_hsv, hsv_to_rgb), "RGB": (lambda x: x,) * 2}[
        space
    ]
    ranges = [(0.0, 100.0), (-128.0, 128.0), (-128.0, 128.0)] if space == "LAB" else [(0.0, 1.0)] * 3
    source, target = forward(frame), forward(reference)
    plain = backward(
        torch.stack(
            [coherence_reference.match_channel(source[:, c], target[:, c], *ranges[c]) for c in range(3)], dim=1
        )
    ).clamp(0, 1)
    fast = ColorReference(reference, space).match(frame)
    assert (fast - plain).abs().max() <= 1 / 255


def test_the_cpu_lab_match_gives_the_torch_forms_match():
    """On the CPU, LAB matching takes its lookup cells straight from the curves in numpy;
    in float64 every step is the torch form: the pictures agree within a level."""
    frame, reference = _smooth_frame(4), _smooth_frame(5) * 0.6 + 0.2
    fast = ColorReference(reference, "LAB").match(frame)
    exact = ColorReference(reference.double(), "LAB").match(frame.double())
    assert fast.dtype == torch.float32
    assert (fast - exact).abs().max() <= 1 / 255
