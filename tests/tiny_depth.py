"""Tiny random-weight depth checkpoints, saved the way the hub's are (weights + preprocessor)."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def save_checkpoint(model, folder: Path, size: int, keep_aspect: bool, multiple: int) -> str:
    """Save ``model`` with a preprocessor config shaped like the hub checkpoints' ones."""
    model.save_pretrained(folder)
    processor = {
        "image_processor_type": "DPTImageProcessor",
        "size": {"height": size, "width": size},
        "keep_aspect_ratio": keep_aspect,
        "ensure_multiple_of": multiple,
        "resample": 3,
        "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225],
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    return str(folder)


def tiny_depth_anything(folder: Path) -> str:
    """A Depth-Anything model (DINOv2 backbone, hidden size 32) in ``folder``; returns its path."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    backbone = Dinov2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        patch_size=14, image_size=56, out_indices=[1, 2], reshape_hidden_states=False,
    )  # fmt: skip
    config = DepthAnythingConfig(
        backbone_config=backbone, patch_size=14, reassemble_hidden_size=32, reassemble_factors=[2, 1],
        neck_hidden_sizes=[16, 32], fusion_hidden_size=16, head_hidden_size=8,
    )  # fmt: skip
    torch.manual_seed(0)
    return save_checkpoint(DepthAnythingForDepthEstimation(config), folder, 56, True, 14)
