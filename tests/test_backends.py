"""Backends: loading checkpoints (folder, single file, hub id), determinism, conditioning."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
from single_file import write_single_file

from engine.backends import GenerationRequest, ModelLoadError, load_backend
from engine.backends.diffusion import DiffusionBackend
from engine.backends.tiny import save_tiny_pipeline, tiny_model_dir
from engine.guidance import GuidanceRequest
from engine.prompts import PromptOptions, compile_prompts
from engine.schedule import Timeline
from engine.settings import GuidanceSettings, ModelSettings


@pytest.fixture(scope="module")
def tiny():
    return load_backend(ModelSettings(backend="tiny"))


def prompt(text: str, negative: str = ""):
    return compile_prompts({"0": text}, Timeline(1), options=PromptOptions(negative_prompt=negative)).at(0)


def request(**changes) -> GenerationRequest:
    values = {
        "prompt": prompt("a red fox"),
        "seed": 3,
        "width": 64,
        "height": 64,
        "steps": 4,
        "cfg": 3.0,
        "sampler": "euler",
    }
    return GenerationRequest(**{**values, **changes})


def test_same_request_same_image_other_seed_other_image(tiny):
    first, again = tiny.generate(request()), tiny.generate(request())
    assert first.shape == (1, 3, 64, 64) and first.min() >= 0 and first.max() <= 1
    assert torch.equal(first, again)
    assert not torch.equal(first, tiny.generate(request(seed=4)))


def test_from_pretrained_on_a_saved_folder(tmp_path, tiny):
    folder = save_tiny_pipeline(tmp_path / "model")
    loaded = DiffusionBackend.load(str(folder), ModelSettings(), device="cpu")
    assert torch.equal(loaded.generate(request()), tiny.generate(request()))


def test_from_single_file_with_a_config_folder(tmp_path, tiny):
    from diffusers import StableDiffusionPipeline

    checkpoint = write_single_file(
        StableDiffusionPipeline.from_pretrained(tiny_model_dir()), tmp_path / "m.safetensors"
    )
    configs = save_tiny_pipeline(tmp_path / "configs", weights=False)
    assert not list(configs.rglob("*.safetensors"))  # every weight must come from the single file
    loaded = DiffusionBackend.load(str(checkpoint), ModelSettings(single_file_config=str(configs)), device="cpu")
    assert torch.equal(loaded.generate(request()), tiny.generate(request()))


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("nobody/no-such-model", "cannot be reached"),
        ("./models/missing", "does not exist"),
        ("/nowhere/model.safetensors", "does not exist"),
    ],
)
def test_models_that_cannot_load_say_why_without_trying_the_network(model, message, monkeypatch):
    # "quickly" as a behaviour: no host name is looked up, so no connection can time out or retry
    lookups = []

    def refuse(*args, **kwargs):
        lookups.append(args[:2])
        raise OSError("tests may not resolve host names")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    with pytest.raises(ModelLoadError) as caught:
        load_backend(ModelSettings(model=model))
    assert message in caught.value.message and caught.value.field == "model.model"
    assert "backend=preview" in caught.value.hint
    assert lookups == []


def test_a_file_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelLoadError, match="not a checkpoint"):
        load_backend(ModelSettings(model=str(tmp_path / "notes.txt")))


def test_strength_so_high_no_step_runs_keeps_the_image(tiny):
    init = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(tiny.generate(request(init=init, strength=0.9, steps=4)), init)


def test_subseed_at_full_strength_is_the_subseed(tiny):
    mixed = tiny.generate(request(seed=3, subseed=8, subseed_strength=1.0))
    assert torch.allclose(mixed, tiny.generate(request(seed=8)), atol=1e-5)
    assert not torch.allclose(tiny.generate(request(seed=3, subseed=8, subseed_strength=0.5)), mixed, atol=1e-3)


def test_each_text_is_encoded_once_and_blends_by_weight(tiny):
    conditioner = tiny.conditioner
    conditioner.frame_embeddings(prompt("warm up"))  # the empty negative is now cached
    before = conditioner.cached_texts()
    for weight in (0.2, 0.5, 0.8):
        frame = compile_prompts({"0": f"a green owl:{weight} | a violet moth:{1 - weight}"}, Timeline(1)).at(0)
        conditioner.frame_embeddings(frame)
    assert conditioner.cached_texts() - before == 2  # three frames, two texts, each encoded once
    fox, _ = conditioner.frame_embeddings(prompt("a red fox"))
    whale, _ = conditioner.frame_embeddings(prompt("a blue whale"))
    half, _ = conditioner.frame_embeddings(compile_prompts({"0": "a red fox | a blue whale"}, Timeline(1)).at(0))
    assert torch.allclose(half, (fox + whale) / 2, atol=1e-6)


def test_emphasis_scales_tokens_and_keeps_the_mean(tiny):
    plain, _ = tiny.conditioner.frame_embeddings(prompt("a red fox"))
    loud, _ = tiny.conditioner.frame_embeddings(prompt("a (red:1.8) fox"))
    assert not torch.allclose(plain, loud) and loud.mean().item() == pytest.approx(plain.mean().item(), rel=1e-4)


def test_long_prompts_and_break_use_more_windows(tiny):
    positive, negative = tiny.conditioner.frame_embeddings(prompt("x " * 100))
    assert positive.shape[1] == 154 and negative.shape[1] == 154  # two 77-token windows, negative padded
    broken, _ = tiny.conditioner.frame_embeddings(prompt("a fox BREAK a whale"))
    assert broken.shape[1] == 154


def test_negative_prompt_and_clip_skip_change_the_conditioning(tiny):
    _, empty = tiny.conditioner.frame_embeddings(prompt("a fox"))
    _, blurry = tiny.conditioner.frame_embeddings(prompt("a fox", negative="blurry"))
    assert not torch.allclose(empty, blurry)
    skip_one, _ = tiny.conditioner.frame_embeddings(prompt("a fox"), clip_skip=1)
    skip_two, _ = tiny.conditioner.frame_embeddings(prompt("a fox"), clip_skip=2)
    assert not torch.allclose(skip_one, skip_two)


def test_preview_backend_pattern_depends_on_prompt_and_seed():
    preview = load_backend(ModelSettings(backend="preview"))
    a = preview.generate(request())
    assert torch.equal(a, preview.generate(request()))
    assert not torch.equal(a, preview.generate(request(seed=4)))
    assert not torch.equal(a, preview.generate(request(prompt=prompt("a blue whale"))))
    init = torch.rand(1, 3, 64, 64)
    assert torch.allclose(preview.generate(request(init=init, strength=1.0)), init)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fp16_on_gpu_matches_fp32_closely():
    half = load_backend(ModelSettings(backend="tiny", dtype="float16"), device="cuda")
    full = load_backend(ModelSettings(backend="tiny", dtype="float32"), device="cuda")
    assert (half.generate(request()) - full.generate(request())).abs().mean() < 0.02


def test_scheduler_names_all_build(tiny):
    from engine.backends.schedulers import SCHEDULERS, make_scheduler

    for name in SCHEDULERS:
        scheduler = make_scheduler(name, tiny.scheduler_config)
        scheduler.set_timesteps(4)
        assert len(scheduler.timesteps) >= 4, name


def test_tiny_model_folder_is_a_real_diffusers_folder():
    assert (Path(tiny_model_dir()) / "model_index.json").exists()
    assert (Path(tiny_model_dir()) / "unet" / "diffusion_pytorch_model.safetensors").exists()


def test_a_tiny_autoencoder_replaces_the_vae(tmp_path, tiny):
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    small = AutoencoderTiny(
        encoder_block_out_channels=(16, 16, 16, 16),
        decoder_block_out_channels=(16, 16, 16, 16),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
    )
    small.save_pretrained(tmp_path / "taesd")
    settings = ModelSettings(backend="tiny", tiny_vae=str(tmp_path / "taesd"), channels_last=True)
    fast = DiffusionBackend.load(str(tiny_model_dir()), settings, device="cpu", label="tiny")
    assert type(fast.vae).__name__ == "AutoencoderTiny" and fast.vae_scale == 8
    init = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    image = fast.generate(request(init=init, strength=0.5))
    assert image.shape == (1, 3, 64, 64) and not torch.equal(image, tiny.generate(request(init=init, strength=0.5)))
    with pytest.raises(ModelLoadError, match="tiny autoencoder") as caught:
        DiffusionBackend.load(str(tiny_model_dir()), ModelSettings(tiny_vae=str(tmp_path / "none")), device="cpu")
    assert caught.value.field == "model.tiny_vae"


def test_a_lora_is_fused_into_the_unet(tmp_path, tiny):
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipeline = StableDiffusionPipeline.from_pretrained(str(tiny_model_dir()), safety_checker=None)
    config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)
    pipeline.unet.add_adapter(config)
    StableDiffusionPipeline.save_lora_weights(
        tmp_path / "lora", unet_lora_layers=get_peft_model_state_dict(pipeline.unet)
    )
    fused = DiffusionBackend.load(
        str(tiny_model_dir()), ModelSettings(lora=str(tmp_path / "lora"), lora_scale=1.0), device="cpu"
    )
    assert not torch.equal(fused.generate(request()), tiny.generate(request()))
    assert not any("lora" in name for name, _ in fused.unet.named_modules())  # folded in: no per-step cost
    with pytest.raises(ModelLoadError) as caught:
        DiffusionBackend.load(str(tiny_model_dir()), ModelSettings(lora=str(tmp_path / "none")), device="cpu")
    assert caught.value.field == "model.lora"


def tiny_sdxl(folder: Path) -> Path:
    """An SDXL pipeline with tiny random weights: two text encoders, the text-time UNet inputs."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from engine.backends.tiny import tiny_components, tiny_tokenizer

    torch.manual_seed(0)
    text = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, vocab_size=1000,
                max_position_embeddings=77, bos_token_id=512, eos_token_id=513, pad_token_id=513)  # fmt: skip
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64, attention_head_dim=(2, 4), use_linear_projection=True, norm_num_groups=32,
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=32 + 6 * 8,
    )  # fmt: skip
    pipeline = StableDiffusionXLPipeline(
        vae=tiny_components()["vae"],
        text_encoder=CLIPTextModel(CLIPTextConfig(**text)),
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**text, projection_dim=32)),
        tokenizer=tiny_tokenizer(),
        tokenizer_2=tiny_tokenizer(),
        unet=unet,
        scheduler=EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    )
    pipeline.save_pretrained(folder)
    return folder


def test_sdxl_checkpoints_render_txt2img_and_img2img(tmp_path):
    backend = DiffusionBackend.load(str(tiny_sdxl(tmp_path / "sdxl")), ModelSettings(), device="cpu", label="sdxl")
    assert backend.sdxl
    image = backend.generate(request())
    assert image.shape == (1, 3, 64, 64) and torch.equal(image, backend.generate(request()))
    assert not torch.equal(image, backend.generate(request(prompt=prompt("a blue whale"))))
    moved = backend.generate(request(init=image, strength=0.6))
    assert moved.shape == image.shape and not torch.equal(moved, image)
    apart = backend.generate(
        request(
            guidance=GuidanceRequest(
                GuidanceSettings(cond_uncond_sync=False, grad_inject_timing="none"), {"mean_scale": 1.0}
            )
        )
    )
    together = backend.generate(
        request(guidance=GuidanceRequest(GuidanceSettings(grad_inject_timing="none"), {"mean_scale": 1.0}))
    )
    assert torch.allclose(apart, together, atol=1e-4)


def save_random_lora(folder: Path, name: str, *, text_encoder: bool = True) -> Path:
    """A random LoRA for the tiny pipeline's UNet (and text encoder), saved as NAME.safetensors."""
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    pipeline = StableDiffusionPipeline.from_pretrained(str(tiny_model_dir()), safety_checker=None)
    unet = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)
    pipeline.unet.add_adapter(unet)
    layers = {"unet_lora_layers": get_peft_model_state_dict(pipeline.unet)}
    if text_encoder:
        encoder = LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        inject_adapter_in_model(encoder, pipeline.text_encoder)  # transformers' add_adapter wants peft >= 0.22
        layers["text_encoder_lora_layers"] = get_peft_model_state_dict(pipeline.text_encoder)
    StableDiffusionPipeline.save_lora_weights(folder, weight_name=f"{name}.safetensors", **layers)
    return folder / f"{name}.safetensors"


def tagged(text: str):
    return compile_prompts({"0": text}, Timeline(1), options=PromptOptions(syntax="a1111")).at(0)


def test_lora_tags_load_the_named_lora_at_their_weight(tmp_path):
    from engine.errors import collecting_notices

    folder = tmp_path / "models" / "Lora" / "styles"  # A1111's layout, a subfolder too
    save_random_lora(folder, "[LoRA][Horror]s4w3d0ffBlend_v10")
    backend = DiffusionBackend.load(
        str(tiny_model_dir()), ModelSettings(lora_dir=str(tmp_path / "models" / "Lora")), device="cpu"
    )
    plain = backend.generate(request(prompt=tagged("a red fox")))
    with_lora = backend.generate(request(prompt=tagged("a red fox<lora:[LoRA][Horror]s4w3d0ffBlend_v10:0.8>")))
    at_zero = backend.generate(request(prompt=tagged("a red fox <lora:[LoRA][Horror]s4w3d0ffBlend_v10:0>")))
    assert (with_lora - plain).abs().max() > 1e-3
    assert torch.equal(at_zero, plain)
    assert torch.equal(backend.generate(request(prompt=tagged("a red fox"))), plain)  # switched off again
    with collecting_notices() as notices:
        unknown = backend.generate(request(prompt=tagged("a red fox <lora:nowhere:1>")))
        backend.generate(request(prompt=tagged("a red fox <lora:nowhere:1>")))
    assert torch.equal(unknown, plain)
    assert len([n for n in notices if "'nowhere' was not found" in n]) == 1
