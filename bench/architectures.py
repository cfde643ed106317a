"""The real architectures the benches time, with random weights, built from configs and saved as
checkpoints the way the hub ships them, so the product loads them through its own code.

- SD-1.5: UNet2DConditionModel, AutoencoderKL and a CLIP ViT-L/14 text encoder at SD-1.5's configs;
- sd-turbo: SD 2.1's UNet and VAE with an OpenCLIP-H-sized text encoder, at 512;
- Depth-Anything-V2-Small: DINOv2-small backbone and DPT head (depth-anything/Depth-Anything-V2-Small-hf's
  config.json and preprocessor_config.json);
- TAESD: AutoencoderTiny at its default config.

The tokenizer is engine.backends.tiny's byte-level CLIP tokenizer (same interface, offline).
``tiny_depth_folder`` is a Depth Anything model a few kilobytes big, for dry runs on the CPU.
Nothing here touches the network. Build on the GPU (``with torch.device("cuda"):``) to skip
seconds of CPU initialisation; ``dtype`` is the precision the weights are saved in.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

SD_SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
DEPTH_PREPROCESSOR = {  # Depth-Anything-V2-Small-hf's preprocessor_config.json
    "image_processor_type": "DPTImageProcessor",
    "do_resize": True,
    "size": {"height": 518, "width": 518},
    "keep_aspect_ratio": True,
    "ensure_multiple_of": 14,
    "resample": 3,
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "do_pad": False,
}


def save_pipeline(components: dict, folder: Path, dtype: torch.dtype = torch.float32) -> Path:
    """A StableDiffusionPipeline of ``components`` saved to ``folder`` (safetensors)."""
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline(
        **components, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipeline.to(dtype=dtype).save_pretrained(folder)
    return Path(folder)


def sd15_components() -> dict:
    """SD-1.5's UNet, VAE and CLIP ViT-L/14 text encoder (its configs), random weights."""
    from diffusers import PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from engine.backends.tiny import tiny_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768,
        attention_head_dim=8,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=768,
            intermediate_size=3072,
            num_attention_heads=12,
            num_hidden_layers=12,
            max_position_embeddings=77,
            projection_dim=768,
            hidden_act="quick_gelu",
            vocab_size=49408,
            bos_token_id=512,  # the byte-level tokenizer's specials
            eos_token_id=513,
            pad_token_id=513,
        )
    )
    scheduler = PNDMScheduler(**SD_SCHEDULER, steps_offset=1, skip_prk_steps=True)
    return {"unet": unet, "vae": sd_vae(), "text_encoder": text, "tokenizer": tiny_tokenizer(), "scheduler": scheduler}


def sd_vae():
    """The SD 1.x/2.x AutoencoderKL (8x latents, 4 channels)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        latent_channels=4,
        sample_size=512,
    )


def sd15_folder(folder: Path, dtype: torch.dtype = torch.float32) -> Path:
    return save_pipeline(sd15_components(), folder, dtype)


def sd_turbo_components() -> dict:
    """sd-turbo's architecture (SD 2.1 UNet and VAE, OpenCLIP-H-sized text encoder), random weights."""
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from engine.backends.tiny import tiny_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=1024,
        attention_head_dim=(5, 10, 20, 20),
        use_linear_projection=True,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=1024,
            intermediate_size=4096,
            num_attention_heads=16,
            num_hidden_layers=23,
            projection_dim=512,
            hidden_act="gelu",
            vocab_size=49408,
            bos_token_id=512,
            eos_token_id=513,
            pad_token_id=513,
        )
    )
    scheduler = EulerDiscreteScheduler(**SD_SCHEDULER, steps_offset=1, timestep_spacing="trailing")
    return {"unet": unet, "vae": sd_vae(), "text_encoder": text, "tokenizer": tiny_tokenizer(), "scheduler": scheduler}


def sd_turbo_folder(folder: Path, dtype: torch.dtype = torch.float32) -> Path:
    """sd-turbo's architecture with random weights, saved to ``folder``."""
    return save_pipeline(sd_turbo_components(), folder, dtype)


def taesd_folder(folder: Path, dtype: torch.dtype = torch.float32) -> Path:
    """TAESD: AutoencoderTiny at its default config (SD 1.x/2.x latents), random weights."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    AutoencoderTiny().to(dtype=dtype).save_pretrained(folder)
    return Path(folder)


def with_vae(pipeline: Path, vae: Path, folder: Path) -> Path:
    """``pipeline``'s folder with ``vae`` (an AutoencoderTiny folder) in place of its VAE: links,
    no copies of the weights."""
    folder.mkdir(parents=True)
    index = json.loads((pipeline / "model_index.json").read_text())
    for name, entry in index.items():
        if isinstance(entry, list) and name != "vae" and (pipeline / name).is_dir():
            (folder / name).symlink_to(pipeline / name)
    index["vae"] = ["diffusers", "AutoencoderTiny"]
    (folder / "vae").symlink_to(vae)
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


def depth_anything_v2_small_folder(folder: Path, dtype: torch.dtype = torch.float32) -> Path:
    """Depth-Anything-V2-Small (its hub config: DINOv2-small, out_indices 3/6/9/12), random weights."""
    from transformers import DepthAnythingConfig, Dinov2Config

    backbone = Dinov2Config(
        hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
        patch_size=14, image_size=518, out_indices=[3, 6, 9, 12], reshape_hidden_states=False,
    )  # fmt: skip
    config = DepthAnythingConfig(
        backbone_config=backbone, patch_size=14, reassemble_hidden_size=384, reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_sizes=[48, 96, 192, 384], fusion_hidden_size=64, head_hidden_size=32, head_in_index=-1,
        depth_estimation_type="relative",
    )  # fmt: skip
    return _save_depth(config, folder, DEPTH_PREPROCESSOR, dtype)


def tiny_depth_folder(folder: Path) -> Path:
    """A Depth Anything model with a 32-wide, 2-layer DINOv2 backbone and a 56-pixel input."""
    from transformers import DepthAnythingConfig, Dinov2Config

    backbone = Dinov2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        patch_size=14, image_size=56, out_indices=[1, 2], reshape_hidden_states=False,
    )  # fmt: skip
    config = DepthAnythingConfig(
        backbone_config=backbone, patch_size=14, reassemble_hidden_size=32, reassemble_factors=[2, 1],
        neck_hidden_sizes=[16, 32], fusion_hidden_size=16, head_hidden_size=8,
    )  # fmt: skip
    return _save_depth(config, folder, {**DEPTH_PREPROCESSOR, "size": {"height": 56, "width": 56}})


def _save_depth(config, folder: Path, processor: dict, dtype: torch.dtype = torch.float32) -> Path:
    from transformers import DepthAnythingForDepthEstimation

    torch.manual_seed(0)
    DepthAnythingForDepthEstimation(config).to(dtype=dtype).save_pretrained(folder)
    (Path(folder) / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))
    return Path(folder)
