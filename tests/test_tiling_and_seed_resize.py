"""Seamless tiling (circular convolutions) and seed resize (A1111's noise pasted centred)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.backends import GenerationRequest, load_backend
from engine.backends.diffusion import DiffusionBackend, seeded_noise
from engine.backends.tiny import tiny_model_dir
from engine.deforum import import_deforum_data
from engine.prompts import PromptOptions, compile_prompts
from engine.render import render
from engine.schedule import Timeline
from engine.settings import ModelSettings


@pytest.fixture(scope="module")
def tiny():
    return load_backend(ModelSettings(backend="tiny"))


def prompt(text: str = "a red fox"):
    return compile_prompts({"0": text}, Timeline(1), options=PromptOptions(syntax="a1111")).at(0)


def request(**changes) -> GenerationRequest:
    values = {"prompt": prompt(), "seed": 3, "width": 96, "height": 96, "steps": 4, "cfg": 3.0, "sampler": "euler"}
    return GenerationRequest(**{**values, **changes})


def padding_modes(*models) -> set[str]:
    return {m.padding_mode for model in models for m in model.modules() if isinstance(m, torch.nn.Conv2d)}


# -- tiling --------------------------------------------------------------------------------------------


def test_tiling_pads_every_convolution_circularly_and_off_again_is_bit_identical(tiny):
    never_tiled = tiny.generate(request())
    seen = []
    hooks = [
        model.register_forward_pre_hook(lambda module, args: seen.append(module.padding_mode))
        for model in (tiny.unet.conv_in, tiny.vae.decoder.conv_out)
    ]
    try:
        tiled = tiny.generate(request(tiling=True))
    finally:
        for hook in hooks:
            hook.remove()
    assert set(seen) == {"circular"} and len(seen) == 4 + 1  # every UNet step, then the decoder
    assert not torch.allclose(tiled, never_tiled, atol=1e-3)
    assert torch.equal(tiny.generate(request(tiling=True)), tiled)
    assert torch.equal(tiny.generate(request()), never_tiled)
    assert padding_modes(tiny.unet, tiny.vae) == {"zeros"}


@pytest.mark.parametrize("tiling", [True, False])
def test_a_tiled_image_is_a_torus_rolling_the_noise_rolls_the_image(tiny, monkeypatch, tiling):
    """Circular convolutions make the whole pipeline shift-equivariant: no edge exists anywhere."""
    image = tiny.generate(request(tiling=tiling))
    rolled_noise = torch.roll(tiny._noise(request()), (2, 4), dims=(-2, -1))  # latents: 8 px each
    monkeypatch.setattr(tiny, "_noise", lambda _: rolled_noise)
    moved = torch.roll(image, (16, 32), dims=(-2, -1))
    difference = (tiny.generate(request(tiling=tiling)) - moved).abs().max()
    assert difference < 1e-4 if tiling else difference > 0.1


def save_conv_lora(folder: Path, name: str) -> None:
    """A random LoRA on the UNet's resnet convolutions: its own convolutions must wrap too."""
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipeline = StableDiffusionPipeline.from_pretrained(str(tiny_model_dir()), safety_checker=None)
    pipeline.unet.add_adapter(LoraConfig(r=2, target_modules=["conv1", "conv2"], init_lora_weights=False))
    layers = {"unet_lora_layers": get_peft_model_state_dict(pipeline.unet)}
    StableDiffusionPipeline.save_lora_weights(folder, weight_name=f"{name}.safetensors", **layers)


def test_convolutions_a_lora_brings_are_tiled_too(tmp_path):
    save_conv_lora(tmp_path, "grain")
    backend = DiffusionBackend.load(str(tiny_model_dir()), ModelSettings(lora_dir=str(tmp_path)), device="cpu")
    backend.generate(request(tiling=True))
    convolutions = len([m for m in backend.unet.modules() if isinstance(m, torch.nn.Conv2d)])
    backend.generate(request(prompt=prompt("a red fox <lora:grain:1>"), tiling=True))
    assert len([m for m in backend.unet.modules() if isinstance(m, torch.nn.Conv2d)]) > convolutions
    assert padding_modes(backend.unet, backend.vae) == {"circular"}
    backend.generate(request(prompt=prompt("a red fox <lora:grain:1>")))
    assert padding_modes(backend.unet, backend.vae) == {"zeros"}


# -- seed resize ---------------------------------------------------------------------------------------


def test_seed_resize_to_the_image_size_or_one_side_only_is_off(tiny):
    plain = tiny._noise(request())
    assert torch.equal(tiny._noise(request(seed_resize_from=(96, 96))), plain)
    assert torch.equal(tiny._noise(request(seed_resize_from=(64, 0))), plain)


@pytest.mark.parametrize(("subseed", "strength"), [(-1, 0.0), (8, 0.4)])
def test_a_smaller_seed_size_is_pasted_centred_on_the_seeds_own_noise(tiny, subseed, strength):
    mixing = {"subseed": subseed, "subseed_strength": strength}
    resized = tiny._noise(request(seed_resize_from=(64, 64), **mixing))  # 8x8 latents on 12x12
    small = tiny._noise(request(width=64, height=64, **mixing))
    assert torch.equal(resized[..., 2:10, 2:10], small)
    around = seeded_noise(3, (1, 4, 12, 12))
    outside = torch.ones(12, 12, dtype=torch.bool)
    outside[2:10, 2:10] = False
    assert torch.equal(resized[..., outside], around[..., outside])


def test_a_larger_seed_size_is_cropped_with_a1111s_offsets(tiny):
    """A1111: dx = (12 - 15) // 2 = -2, so 11 = 15 + 2 dx rows/columns from index 2; the 12th keeps
    the image-size noise. Wide and short: 128 px wide (16 latents) crops x, 64 high (8) pastes y."""
    large = tiny._noise(request(seed_resize_from=(120, 120)))
    assert torch.equal(large[..., :11, :11], seeded_noise(3, (1, 4, 15, 15))[..., 2:13, 2:13])
    own = seeded_noise(3, (1, 4, 12, 12))
    assert torch.equal(large[..., 11, :], own[..., 11, :]) and torch.equal(large[..., :, 11], own[..., :, 11])
    mixed = tiny._noise(request(seed_resize_from=(128, 64)))
    assert torch.equal(mixed[..., 2:10, :], seeded_noise(3, (1, 4, 8, 16))[..., :, 2:14])


def test_same_seed_keeps_its_composition_at_another_size(tiny):
    small = tiny.generate(request(width=64, height=64))
    larger = tiny.generate(request(seed_resize_from=(64, 64)))
    plain = tiny.generate(request())
    centre = slice(24, 40)  # away from where the pasted noise meets the rest
    close, far = ((image[..., 16:80, 16:80] - small).abs()[..., centre, centre].mean() for image in (larger, plain))
    assert close < 0.5 * far


# -- from settings to the request --------------------------------------------------------------------


def test_deforum_files_turn_both_on_and_the_render_asks_for_them(tmp_path):
    data = {"W": 64, "H": 64, "max_frames": 2, "tiling": True, "seed_resize_from_w": 512, "seed_resize_from_h": 768}
    result = import_deforum_data({**data, "prompts": {"0": "a red fox"}})
    assert {"image.tiling", "sampling.seed_resize_from_w", "sampling.seed_resize_from_h"} <= result.mapped
    settings = result.settings
    settings.batch.outdir, settings.model.backend = str(tmp_path), "preview"
    preview, requests = load_backend(settings.model), []

    class Recorder:
        name, device = preview.name, preview.device

        def generate(self, request: GenerationRequest) -> torch.Tensor:
            requests.append(request)
            return preview.generate(request)

    render(settings, backend=Recorder())
    assert requests and all(r.tiling and r.seed_resize_from == (512, 768) for r in requests)
