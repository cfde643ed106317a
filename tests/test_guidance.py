"""Gradient conditioning with the tiny pipeline: each loss moves its statistic, timing, clamps."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from engine.backends import GenerationRequest, load_backend
from engine.errors import DriftwaveError, collecting_notices
from engine.guidance import (
    GuidanceRequest,
    clamp_gradient,
    extract_palette,
    fit_linear_decoder,
    guided_steps,
    linear_decode,
    palette_distance,
)
from engine.presets import settings_from_data
from engine.prompts import compile_prompts
from engine.render import render
from engine.schedule import Timeline
from engine.settings import GuidanceSettings, ModelSettings

STEPS = 10


@pytest.fixture(scope="module")
def tiny():
    return load_backend(ModelSettings(backend="tiny"))


def options(**values) -> GuidanceSettings:
    """Exact gradients (the VAE decodes x0: the tiny random VAE is nearly flat, so a fitted linear
    map of it says little), every step, a loose clamp."""
    base = {
        "decode_method": "autoencoder",
        "grad_threshold_type": "static",
        "clamp_grad_threshold": 50.0,
        "grad_inject_timing": "none",
    }
    return GuidanceSettings(**{**base, **values})


def generate(backend, guidance: GuidanceRequest | None = None, cfg: float = 3.0) -> torch.Tensor:
    prompt = compile_prompts({"0": "a red fox"}, Timeline(1)).at(0)
    request = GenerationRequest(
        prompt=prompt, seed=7, width=64, height=64, steps=STEPS, cfg=cfg, sampler="euler", guidance=guidance
    )
    return backend.generate(request)


@pytest.mark.parametrize("wrt", ["x0_pred", "x"])
def test_mean_guidance_pulls_towards_grey(tiny, wrt):
    plain = generate(tiny)
    guided = generate(tiny, GuidanceRequest(options(gradient_wrt=wrt), {"mean_scale": 4000.0}))
    assert (guided - 0.5).abs().mean() < 0.85 * (plain - 0.5).abs().mean()


@pytest.mark.parametrize("target", [-0.6, 0.6])
def test_exposure_guidance_moves_the_mean_towards_the_target(tiny, target):
    plain = generate(tiny)
    guided = generate(tiny, GuidanceRequest(options(exposure_target=target), {"exposure_scale": 20000.0}))
    goal = (target + 1) / 2
    assert abs(guided.mean() - goal) < abs(plain.mean() - goal) - 0.005


def test_var_guidance_lowers_the_variance(tiny):
    plain = generate(tiny)
    guided = generate(tiny, GuidanceRequest(options(), {"var_scale": 40000.0}))
    assert guided.var() < 0.8 * plain.var()


def test_colormatch_guidance_brings_the_palette_closer(tiny):
    source = torch.zeros(1, 3, 32, 32)
    source[:, 0, :16], source[:, 2, 16:] = 0.9, 0.8  # a red and a blue half
    palette = extract_palette(source, 2)
    plain = generate(tiny)
    guided = generate(tiny, GuidanceRequest(options(), {"colormatch_scale": 4000.0}, palette=palette))
    assert palette_distance(guided, palette) < palette_distance(plain, palette) - 0.02  # the tiny VAE moves little


def test_init_mse_guidance_pulls_towards_the_image(tiny):
    target = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(1, 3, 64, 64).contiguous()
    plain = generate(tiny)
    guided = generate(tiny, GuidanceRequest(options(), {"init_mse_scale": 40000.0}, init_image=target))
    assert ((guided - target) ** 2).mean() < 0.8 * ((plain - target) ** 2).mean()


def test_the_linear_decoder_is_fitted_to_the_models_decoder():
    truth = torch.tensor([[0.3, 0.2, 0.2], [0.1, 0.3, 0.1], [-0.1, 0.2, 0.3], [-0.2, -0.3, -0.4], [0.5, 0.4, 0.45]])

    def decoder(latents):  # a linear "VAE" with an 8x upsampling, as the real ones have
        rgb = linear_decode(latents, truth)
        return torch.nn.functional.interpolate(rgb, scale_factor=8, mode="nearest")

    fitted = fit_linear_decoder(decoder, 4, "cpu", torch.float32)
    assert torch.allclose(fitted, truth, atol=1e-4)


def test_guidance_with_the_linear_decoder_runs_and_changes_the_image(tiny):
    plain = generate(tiny)
    guided = generate(tiny, GuidanceRequest(options(decode_method="linear"), {"mean_scale": 4000.0}))
    assert (guided - plain).abs().mean() > 0.01


class LatentsPerStep:
    """The latents entering each step, as the UNet receives them (its no-grad calls only: the
    extra differentiable call that ``gradient_wrt="x"`` makes is not a step)."""

    def __init__(self, unet) -> None:
        self.seen: list[torch.Tensor] = []
        self.handle = unet.register_forward_pre_hook(self._record)

    def _record(self, module, args) -> None:
        if not torch.is_grad_enabled():
            self.seen.append(args[0].detach().clone())

    def run(self, backend, guidance: GuidanceRequest | None) -> list[torch.Tensor]:
        """The latents entering each of the STEPS steps, then the image."""
        self.seen = []
        image = generate(backend, guidance)
        assert len(self.seen) == STEPS
        return [*self.seen, image]


@pytest.fixture
def latents_per_step(tiny):
    recorder = LatentsPerStep(tiny.unet)
    yield recorder
    recorder.handle.remove()


def first_difference(one: list[torch.Tensor], other: list[torch.Tensor]) -> int | None:
    """The index of the first step whose entering latents differ (STEPS: only the image), else None."""
    return next((index for index, (a, b) in enumerate(zip(one, other, strict=True)) if not torch.equal(a, b)), None)


def differs_from(one: list[torch.Tensor], other: list[torch.Tensor], start: int) -> bool:
    """Bit-identical before ``start``, different at ``start`` and at every later step."""
    pairs = list(zip(one, other, strict=True))
    return all(torch.equal(a, b) for a, b in pairs[:start]) and not any(torch.equal(a, b) for a, b in pairs[start:])


@pytest.mark.parametrize(
    ("timing", "expected"),
    [(3, [2, 5, 8]), ([0.25, 0.5], [2, 5]), ([1.0, 2.0, 10.0], [0, 1, 9]), ("none", list(range(STEPS)))],
)
def test_inject_timing_guides_exactly_the_listed_steps(tiny, latents_per_step, timing, expected):
    """Guidance at step k shows in the latents entering step k + 1: a run guided at the listed
    steps equals the plain run up to the first of them and differs from the step after it on,
    and each listed step, added to the ones before it, first changes the latents right after it."""
    assert sorted(guided_steps(timing, STEPS)) == expected

    def guided(timing) -> list[torch.Tensor]:
        return latents_per_step.run(tiny, GuidanceRequest(options(grad_inject_timing=timing), {"mean_scale": 4000.0}))

    plain = latents_per_step.run(tiny, None)
    assert first_difference(latents_per_step.run(tiny, None), plain) is None  # the recording itself is repeatable
    by_timing = guided(timing)
    assert differs_from(by_timing, plain, expected[0] + 1)
    before = plain
    for count, step in enumerate(expected, start=1):
        up_to_here = guided([float(listed + 1) for listed in expected[:count]])  # 1-based step numbers
        assert first_difference(up_to_here, before) == step + 1, f"guiding step {step} changed other steps"
        before = up_to_here
    assert first_difference(by_timing, before) is None  # the timing guides those steps and no other
    with_no_scale = latents_per_step.run(tiny, GuidanceRequest(options(grad_inject_timing=timing), {"mean_scale": 0.0}))
    assert first_difference(with_no_scale, plain) is None  # no scale on: no step is guided


def test_thresholds_bound_the_gradient():
    gradient = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0)) * 5
    static = clamp_gradient(gradient, options(grad_threshold_type="static", clamp_grad_threshold=0.3), 0, 10)
    assert static.abs().max() <= 0.3
    mean = clamp_gradient(gradient, options(grad_threshold_type="mean", clamp_grad_threshold=0.3), 0, 10)
    assert mean.abs().mean() == pytest.approx(0.3, rel=1e-4)
    dynamic = clamp_gradient(gradient, options(grad_threshold_type="dynamic", clamp_grad_threshold=0.3), 0, 10)
    assert dynamic.abs().max() <= 0.3 + 1e-6 and (dynamic != 0).float().mean() > 0.9
    scheduled = options(grad_threshold_type="schedule", clamp_start=0.5, clamp_stop=0.1)
    assert clamp_gradient(gradient, scheduled, 0, 10).abs().max() == pytest.approx(0.5)
    assert clamp_gradient(gradient, scheduled, 9, 10).abs().max() == pytest.approx(0.1)


def render_settings(tmp_path: Path, **guidance):
    data = {
        "animation": {"max_frames": 2},
        "image": {"W": 64, "H": 64},
        "sampling": {"seed": 3, "steps": 4},
        "batch": {"outdir": str(tmp_path / "out")},
        "model": {"backend": "tiny"},
        "guidance": guidance,
    }
    with collecting_notices():
        return settings_from_data(data)


def test_scales_are_schedules_in_the_render_loop(tmp_path, tiny):
    plain = render(render_settings(tmp_path / "a"), backend=tiny)
    guided = render(
        render_settings(
            tmp_path / "b", mean_scale="0:(4000)", decode_method="autoencoder", grad_threshold_type="static",
            clamp_grad_threshold=50, grad_inject_timing="none",
        ),
        backend=tiny,
    )  # fmt: skip
    first = [cv2.imread(str(path)).astype(float) / 255 for path in (plain.frames[0], guided.frames[0])]
    assert np.abs(first[1] - 0.5).mean() < np.abs(first[0] - 0.5).mean()


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> str:
    """A CLIP with random weights (vision and text towers of width 32) saved as a hub folder."""
    import json

    from transformers import CLIPConfig, CLIPModel

    from engine.backends.tiny import tiny_tokenizer

    folder = tmp_path_factory.mktemp("clip")
    text = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, vocab_size=1000,
                max_position_embeddings=77, bos_token_id=512, eos_token_id=513, pad_token_id=513)  # fmt: skip
    vision = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, image_size=32,
                  patch_size=8)  # fmt: skip
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": mean, "image_std": std}))
    return str(folder)


def clip_similarity(folder: str, image: torch.Tensor, text: str) -> float:
    from engine.guidance import clip_model

    clip = clip_model(folder, "cpu")
    with torch.no_grad():
        embedding = clip.image_embeddings(torch.nn.functional.adaptive_avg_pool2d(image, clip.size))
    return float((embedding * clip.text_embedding(text)).sum())


def test_clip_guidance_pulls_the_image_towards_the_prompt(tiny, tiny_clip):
    plain = generate(tiny)
    request = GuidanceRequest(options(clip_name=tiny_clip, cutn=2), {"clip_scale": 400.0}, text="a red fox", seed=1)
    guided = generate(tiny, request)
    assert clip_similarity(tiny_clip, guided, "a red fox") > clip_similarity(tiny_clip, plain, "a red fox") + 0.01


def test_aesthetics_guidance_raises_the_predicted_score(tiny, tiny_clip, tmp_path):
    from engine.guidance import aesthetics_head, clip_model

    torch.manual_seed(3)
    head = torch.nn.Linear(16, 1)
    torch.save(head.state_dict(), tmp_path / "head.pth")
    settings = options(clip_name=tiny_clip, aesthetics_model=str(tmp_path / "head.pth"))
    plain = generate(tiny)
    guided = generate(tiny, GuidanceRequest(settings, {"aesthetics_scale": 400.0}))
    clip, predictor = clip_model(tiny_clip, "cpu"), aesthetics_head(str(tmp_path / "head.pth"), "cpu")

    def score(image):
        with torch.no_grad():
            return float(predictor(clip.image_embeddings(torch.nn.functional.adaptive_avg_pool2d(image, 32))))

    assert score(guided) > score(plain)


def test_an_unloadable_clip_model_can_be_skipped_with_a_notice(tmp_path, tiny):
    settings = render_settings(
        tmp_path, clip_scale="0:(1)", clip_name=str(tmp_path / "no-clip"), skip_unloadable_guidance=True
    )
    with collecting_notices() as notices:
        result = render(settings, backend=tiny)
    assert len(result.frames) == 2
    assert any("rendering without clip_scale" in str(notice) for notice in notices)


@pytest.mark.parametrize(
    ("guidance", "field"),
    [
        ({"clip_scale": "0:(1)", "clip_name": "no-such/clip-model"}, "guidance.clip_name"),
        ({"aesthetics_scale": "5:(2)", "clip_name": "TINY"}, "guidance.aesthetics_model"),
        ({"colormatch_scale": "0:(1)"}, "guidance.colormatch_image"),
        ({"init_mse_scale": "0:(1)", "init_mse_image": "nowhere.png"}, "guidance.init_mse_image"),
    ],
)
def test_guidance_that_cannot_run_stops_before_the_first_frame(tmp_path, tiny, tiny_clip, guidance, field):
    guidance = {key: tiny_clip if value == "TINY" else value for key, value in guidance.items()}
    with pytest.raises(DriftwaveError) as caught:
        render(render_settings(tmp_path, **guidance), backend=tiny)
    assert caught.value.field == field
    assert not (tmp_path / "out").exists()


def test_cond_and_uncond_apart_give_the_same_image(tiny):
    together = generate(tiny, GuidanceRequest(options(), {"mean_scale": 1.0}))
    apart = generate(tiny, GuidanceRequest(options(cond_uncond_sync=False), {"mean_scale": 1.0}))
    assert torch.allclose(together, apart, atol=1e-4)
