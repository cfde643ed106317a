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


def a1111_state_dict(net) -> dict[str, torch.Tensor]:
    """``net``'s weights under the original ControlNet's names (``control_model.input_blocks...``),
    as A1111's control_v11p_*.safetensors files hold them: its UNet encoder named as a UNet's
    (tests/single_file.py), its own layers by the inverse of diffusers' ``convert_controlnet_checkpoint``."""
    import re

    from single_file import unet_key

    hint = {"conv_in": "0", "conv_out": "14"}

    def original(key: str) -> str:
        if match := re.fullmatch(r"controlnet_down_blocks\.(\d+)\.(.+)", key):
            return f"zero_convs.{match[1]}.0.{match[2]}"
        if match := re.fullmatch(r"controlnet_mid_block\.(.+)", key):
            return f"middle_block_out.0.{match[1]}"
        if match := re.fullmatch(r"controlnet_cond_embedding\.blocks\.(\d+)\.(.+)", key):
            return f"input_hint_block.{2 * (int(match[1]) + 1)}.{match[2]}"
        if match := re.fullmatch(r"controlnet_cond_embedding\.(conv_in|conv_out)\.(.+)", key):
            return f"input_hint_block.{hint[match[1]]}.{match[2]}"
        return unet_key(key, net.config.layers_per_block + 1, set())

    return {f"control_model.{original(key)}": tensor for key, tensor in net.state_dict().items()}
