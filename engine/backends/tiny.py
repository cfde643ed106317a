"""A Stable Diffusion 1.x pipeline with tiny random weights, built from configs, fully offline.

It has the real architecture (UNet2DConditionModel, AutoencoderKL with an 8x latent, a CLIP
text encoder and tokenizer) at a few hundred kilobytes, so tests exercise the same diffusers
code paths as a real checkpoint: it is saved with ``save_pretrained`` and loaded back through
``from_pretrained`` like any model folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

VERSION = "2"


def tiny_model_dir() -> Path:
    """The tiny pipeline's folder in the user's cache, built on first use."""
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "driftwave" / f"tiny-sd-v{VERSION}"
    if not (root / "model_index.json").exists():
        save_tiny_pipeline(root)
    return root


def save_tiny_pipeline(folder: Path, *, weights: bool = True) -> Path:
    """Write the tiny pipeline to ``folder`` (configs only when ``weights`` is False)."""
    from diffusers import StableDiffusionPipeline

    folder = Path(folder)
    pipeline = StableDiffusionPipeline(
        **tiny_components(), safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    temporary = folder.with_name(folder.name + ".part")
    pipeline.save_pretrained(temporary, safe_serialization=True)
    if not weights:
        for path in temporary.rglob("*.safetensors"):
            path.unlink()
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    temporary.rename(folder)
    return folder


def tiny_components() -> dict:
    from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 32, 64, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=32,
        sample_size=64,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=1000,
            max_position_embeddings=77,
            projection_dim=32,
            bos_token_id=512,
            eos_token_id=513,
            pad_token_id=513,
        )
    )
    # a trained CLIP's last LayerNorm has a bias; without one every token's mean is 0, and A1111's
    # emphasis (which divides by the embeddings' mean) divides by rounding noise
    last_norm = next(module for name, module in text_encoder.named_modules() if name.endswith("final_layer_norm"))
    torch.nn.init.normal_(last_norm.bias, std=0.5)
    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
        timestep_spacing="leading",
    )
    return {
        "unet": unet.eval(),
        "vae": vae.eval(),
        "text_encoder": text_encoder.eval(),
        "tokenizer": tiny_tokenizer(),
        "scheduler": scheduler,
    }


def tiny_tokenizer():
    """A byte-level CLIP tokenizer: every byte is a token, no merges (offline, 514 tokens)."""
    import tempfile

    from transformers import CLIPTokenizer

    symbols = list(_bytes_to_unicode().values())
    vocab = {symbol: index for index, symbol in enumerate(symbols)}
    vocab.update({f"{symbol}</w>": len(symbols) + index for index, symbol in enumerate(symbols)})
    vocab.update({"<|startoftext|>": 512, "<|endoftext|>": 513})
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77}
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "vocab.json").write_text(json.dumps(vocab))
        (Path(folder) / "merges.txt").write_text("#version: 0.2\n")
        (Path(folder) / "tokenizer_config.json").write_text(json.dumps(config))
        return CLIPTokenizer.from_pretrained(folder)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table, which CLIP's BPE reads."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    characters = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            characters.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, characters), strict=True))
