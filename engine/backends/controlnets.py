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
from pathlib import Path

import torch

from engine.backends.base import ModelLoadError
from engine.controlnet import ControlInput

HINT = "give a ControlNet hub id (lllyasviel/control_v11p_sd15_canny), a diffusers folder or a .safetensors file"


def load_controlnet(model: str, dtype: torch.dtype, field: str):
    """A ``ControlNetModel`` from a hub id, a diffusers folder or a single .safetensors/.ckpt file."""
    from diffusers import ControlNetModel

    from engine.backends.diffusion import hub_reachable

    path = Path(model).expanduser()
    try:
        if path.is_file():
            return ControlNetModel.from_single_file(str(path), torch_dtype=dtype)
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
