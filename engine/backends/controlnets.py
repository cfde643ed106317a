"""ControlNet models for the diffusers backend: loaded once by name (hub id, diffusers folder or
single file), and their residuals for one UNet call, summed over the units that steer the step
(as diffusers' ``MultiControlNetModel`` sums them).

Control modes as A1111's ControlNet has them: Balanced steers the conditional and unconditional
predictions alike; "My prompt is more important" scales the residuals down towards the shallow
blocks (10^-1 ... 10^0, A1111's soft injection, diffusers' guess-mode scales); "ControlNet is
more important" does that on the conditional prediction only (diffusers' guess mode).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from engine.backends.base import ModelLoadError
from engine.controlnet import ControlInput

HINT = "give a ControlNet hub id (lllyasviel/control_v11p_sd15_canny), a diffusers folder or a .safetensors file"


def load_controlnet(model: str, dtype: torch.dtype, field: str):
    """A ``ControlNetModel`` from a hub id, a diffusers folder or a single .safetensors/.ckpt file."""
    with warnings.catch_warnings():  # diffusers 0.42 passes huggingface_hub an argument it deprecated
        warnings.filterwarnings("ignore", "The `local_dir_use_symlinks` argument is deprecated", UserWarning)
        return _load(model, dtype, field)


def _load(model: str, dtype: torch.dtype, field: str):
    from diffusers import ControlNetModel

    from engine.backends.diffusion import hub_reachable

    path = Path(model).expanduser()
    try:
        if path.is_file():
            return _from_single_file(path, dtype, field)
        if path.is_dir():
            return ControlNetModel.from_pretrained(str(path), torch_dtype=dtype)
        if model.startswith((".", "/", "~")) or model.count("/") != 1:
            raise ModelLoadError(f"ControlNet {model} does not exist", field=field, hint=HINT)
        try:
            return ControlNetModel.from_pretrained(model, torch_dtype=dtype, local_files_only=True)
        except OSError:
            pass  # not downloaded yet
        if os.environ.get("HF_HUB_OFFLINE") == "1" or not hub_reachable():
            raise ModelLoadError(
                f"ControlNet {model} is not downloaded and huggingface.co cannot be reached from here",
                field=field,
                hint="download it on a connected machine (huggingface-cli download) or give a local folder or file",
            )
        return ControlNetModel.from_pretrained(model, torch_dtype=dtype)
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as error:
        raise ModelLoadError(
            f"cannot load the ControlNet {model}: {str(error).splitlines()[0]}", field=field, hint=HINT
        ) from None


def _from_single_file(path: Path, dtype: torch.dtype, field: str):
    """A ControlNet file in the original (A1111) or diffusers layout. Its architecture comes from
    a ``config.json`` beside it (a diffusers folder's weights), else from the config diffusers
    picks for its kind (lllyasviel/control_v11p_sd15_canny for SD 1.x ones, diffusers' SDXL
    ControlNets for those): from the local cache, the hub only when it can be reached."""
    from diffusers import ControlNetModel

    from engine.backends.diffusion import hub_reachable

    if (path.parent / "config.json").is_file():
        return ControlNetModel.from_single_file(str(path), config=str(path.parent), torch_dtype=dtype)
    try:
        return ControlNetModel.from_single_file(str(path), torch_dtype=dtype, local_files_only=True)
    except OSError as error:
        if os.environ.get("HF_HUB_OFFLINE") == "1" or not hub_reachable():
            raise ModelLoadError(
                f"the ControlNet file {path.name} needs its architecture's config, and it is not on this machine: "
                f"{str(error).splitlines()[0]}",
                field=field,
                hint="put the config.json of a diffusers ControlNet of the same architecture beside the file, or "
                "load it once where huggingface.co can be reached (the config is cached)",
            ) from None
    return ControlNetModel.from_single_file(str(path), torch_dtype=dtype)


class Steering:
    """The units steering one generation: (net, control image at the render size on the device,
    its ControlInput); ``residuals`` for one UNet call at a step."""

    def __init__(self, units: list[tuple[object, torch.Tensor, ControlInput]]) -> None:
        self.units = units

    def residuals(self, model_input, timestep, conditioning, added, conditional_rows: list[bool], step):
        """(down residuals, mid residual) summed over the units on at ``step`` = (index, total),
        or (None, None); ``conditional_rows`` says which rows of the batch are the prompt's."""
        down, mid = None, None
        for net, image, control in self.units:
            if not control.active(*step) or control.values.weight == 0:
                continue
            prompt_only = control.mode == "ControlNet is more important"
            rows_on = conditional_rows if prompt_only else [True] * len(conditional_rows)
            if not any(rows_on):
                continue
            extra = {"added_cond_kwargs": added} if added is not None else {}
            unit_down, unit_mid = net(
                model_input,
                timestep,
                encoder_hidden_states=conditioning,
                controlnet_cond=image.expand(model_input.shape[0], -1, -1, -1),
                conditioning_scale=control.values.weight,
                return_dict=False,
                **extra,
            )
            if control.mode != "Balanced":
                scales = torch.logspace(-1, 0, len(unit_down) + 1, device=model_input.device)
                unit_down = [sample * scale for sample, scale in zip(unit_down, scales, strict=False)]
                unit_mid = unit_mid * scales[-1]
            if not all(rows_on):
                keep = torch.tensor(rows_on, device=model_input.device, dtype=model_input.dtype).view(-1, 1, 1, 1)
                unit_down, unit_mid = [sample * keep for sample in unit_down], unit_mid * keep
            down = unit_down if down is None else [a + b for a, b in zip(down, unit_down, strict=True)]
            mid = unit_mid if mid is None else mid + unit_mid
        return down, mid
