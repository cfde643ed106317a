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
    as A1111's control_v11p_*.safetensors files hold them: diffusers' own table for the fixed
    layers, the inverse of its ``convert_controlnet_checkpoint`` for the blocks."""
    import re

    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    fixed = DIFFUSERS_TO_LDM_MAPPING["controlnet"]["layers"]
    per_block = net.config.layers_per_block + 1
    resnet = (
        ("norm1", "in_layers.0"),
        ("conv1", "in_layers.2"),
        ("norm2", "out_layers.0"),
        ("conv2", "out_layers.3"),
        ("time_emb_proj", "emb_layers.1"),
        ("conv_shortcut", "skip_connection"),
    )

    def resnet_names(rest: str) -> str:
        for new, old in resnet:
            rest = rest.replace(new, old)
        return rest

    def original(key: str) -> str:
        if key in fixed:
            return fixed[key]
        if match := re.fullmatch(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            block, layer, rest = int(match[1]), int(match[2]), match[3]
            return f"input_blocks.{block * per_block + layer + 1}.0.{resnet_names(rest)}"
        if match := re.fullmatch(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
            block, layer, rest = int(match[1]), int(match[2]), match[3]
            return f"input_blocks.{block * per_block + layer + 1}.1.{rest}"
        if match := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            return f"input_blocks.{(int(match[1]) + 1) * per_block}.0.op.{match[2]}"
        if match := re.fullmatch(r"controlnet_down_blocks\.(\d+)\.(.+)", key):
            return f"zero_convs.{match[1]}.0.{match[2]}"
        if match := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
            return f"middle_block.{2 * int(match[1])}.{resnet_names(match[2])}"
        if match := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
            return f"middle_block.1.{match[1]}"
        if match := re.fullmatch(r"controlnet_mid_block\.(.+)", key):
            return f"middle_block_out.0.{match[1]}"
        if match := re.fullmatch(r"controlnet_cond_embedding\.blocks\.(\d+)\.(.+)", key):
            return f"input_hint_block.{2 * (int(match[1]) + 1)}.{match[2]}"
        raise KeyError(f"no original name for {key}")

    return {f"control_model.{original(key)}": tensor for key, tensor in net.state_dict().items()}
