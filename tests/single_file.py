"""Write a diffusers SD 1.x pipeline as an original single-file checkpoint (LDM key layout).

Diffusers reads these files (``from_single_file``) but has no writer, so tests build one by
inverting the key renames of diffusers' own converter (loaders/single_file_utils.py). A wrong
rename shows up as a load failure or as weights that differ after loading.
"""

from __future__ import annotations

import re
from pathlib import Path

from safetensors.torch import save_file

RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
UNET_LAYERS = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def write_single_file(pipeline, path: Path) -> Path:
    state = {}
    unet = pipeline.unet
    per_block = unet.config.layers_per_block + 1
    attention_blocks = {
        int(m.group(1)) for key in unet.state_dict() if (m := re.match(r"up_blocks\.(\d+)\.attentions", key))
    }
    for key, value in unet.state_dict().items():
        state["model.diffusion_model." + unet_key(key, per_block, attention_blocks)] = value.contiguous()
    levels = len(pipeline.vae.config.block_out_channels)
    for key, value in pipeline.vae.state_dict().items():
        ldm_key = _vae_key(key, levels)
        if ".mid.attn_1." in ldm_key and value.ndim == 2:
            value = value[:, :, None, None]  # LDM stores these projections as 1x1 convolutions
        state["first_stage_model." + ldm_key] = value.contiguous()
    for key, value in pipeline.text_encoder.state_dict().items():
        prefix = "" if key.startswith("text_model.") else "text_model."
        state["cond_stage_model.transformer." + prefix + key] = value.contiguous()
    save_file(state, str(path))
    return path


def unet_key(key: str, per_block: int, attention_blocks: set[int]) -> str:
    """The LDM name of a diffusers UNet key (``attention_blocks``: the up blocks with attention)."""
    for new, old in UNET_LAYERS.items():
        if key.startswith(new + "."):
            return old + key[len(new) :]
    if m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
        block, layer, rest = int(m[1]), int(m[2]), m[3]
        return f"input_blocks.{block * per_block + layer + 1}.0.{_resnet(rest)}"
    if m := re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", key):
        return f"input_blocks.{int(m[1]) * per_block + int(m[2]) + 1}.1.{m[3]}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
        return f"input_blocks.{(int(m[1]) + 1) * per_block}.0.op.{m[2]}"
    if m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key):
        return f"middle_block.{2 * int(m[1])}.{_resnet(m[2])}"
    if m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
        return f"output_blocks.{int(m[1]) * per_block + int(m[2])}.0.{_resnet(m[3])}"
    if m := re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", key):
        return f"output_blocks.{int(m[1]) * per_block + int(m[2])}.1.{m[3]}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
        block = int(m[1])
        slot = 2 if block in attention_blocks else 1
        return f"output_blocks.{block * per_block + per_block - 1}.{slot}.conv.{m[2]}"
    raise KeyError(f"no LDM name for UNet key {key}")


def _resnet(rest: str) -> str:
    name, _, parameter = rest.rpartition(".")
    return f"{RESNET.get(name, name)}.{parameter}"


def _vae_key(key: str, levels: int) -> str:
    key = key.replace("conv_norm_out", "norm_out")
    if m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)\.(weight|bias)", key):
        return f"{m[1]}.mid.attn_1.{VAE_ATTENTION.get(m[2], m[2])}.{m[3]}"
    if m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", key):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
        return f"encoder.down.{m[1]}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
        return f"decoder.up.{levels - 1 - int(m[1])}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
        return f"decoder.up.{levels - 1 - int(m[1])}.upsample.conv.{m[2]}"
    return key
