"""Tiny random-weight ControlNets for the tiny SD pipeline, saved as the hub's are (a diffusers
folder) and loaded back through the users' path."""

from __future__ import annotations

from pathlib import Path

import torch


def save_tiny_controlnet(folder: Path, seed: int, pipeline: Path | None = None) -> str:
    """A ControlNet of the UNet of ``pipeline`` (default: the tiny SD 1.x one), made by
    ``ControlNetModel.from_unet``, its zero convolutions given random weights so it steers;
    returns the folder."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    from engine.backends.tiny import tiny_model_dir

    unet = UNet2DConditionModel.from_pretrained(Path(pipeline or tiny_model_dir()) / "unet")
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 32, 32))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in [*net.controlnet_down_blocks.parameters(), *net.controlnet_mid_block.parameters()]:
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
        for parameter in net.controlnet_cond_embedding.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    net.save_pretrained(folder)
    return str(folder)
