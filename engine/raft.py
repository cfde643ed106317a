"""RAFT optical flow, as Deforum's ``RAFT.predict`` measures it: torchvision's ``raft_large`` with
its default weights (``Raft_Large_Weights.C_T_SKHT_V2``, downloaded once by torch.hub into
``$TORCH_HOME/hub/checkpoints``), the weights' own transforms, 50 flow updates, the last one.

torchvision is the user's (it must match their torch build), so it is imported only here and
only when a flow setting names RAFT.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from engine.errors import DriftwaveError

FLOW_UPDATES = 50  # Deforum's num_flow_updates
SMALLEST = 128  # RAFT's correlation pyramid needs feature maps of 16, the picture downsampled by 8
_HINT = "use DIS Medium, DIS Fine or Farneback, which need no model"


def check_raft(field: str, width: int, height: int) -> None:
    """Before the first frame: torchvision and RAFT's weights load here, and the picture is one
    RAFT can measure; otherwise a message naming ``field``."""
    if min(width, height) < SMALLEST or width % 8 or height % 8:
        raise DriftwaveError(
            f"RAFT measures pictures of at least {SMALLEST}×{SMALLEST} pixels in multiples of 8, not {width}×{height}",
            field=field,
            hint=_HINT,
        )
    try:
        raft_model(torch.device("cpu"))
    except DriftwaveError as error:
        raise error.located(field=field) from None


@functools.cache
def raft_model(device: torch.device):
    """torchvision's ``raft_large`` with its default weights on ``device``, and their transforms."""
    try:
        from torchvision.models.optical_flow import Raft_Large_Weights, raft_large
    except (ImportError, RuntimeError) as error:  # missing, or built for another torch
        raise DriftwaveError(
            f"RAFT needs torchvision, which does not import here ({str(error).splitlines()[0]})",
            hint=f"pip install the torchvision that matches your torch, or {_HINT}",
        ) from None
    weights = Raft_Large_Weights.DEFAULT
    try:
        model = raft_large(weights=weights, progress=False)
    except (OSError, RuntimeError, ValueError) as error:  # not downloaded, and no network
        raise DriftwaveError(
            f"RAFT's weights ({weights.url}) cannot be loaded: {str(error).splitlines()[0]}",
            hint="download them once where the network reaches download.pytorch.org (torch.hub caches them), "
            f"or {_HINT}",
        ) from None
    return model.to(device).eval(), weights.transforms()


def raft_flow(before: np.ndarray, after: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """The flow (H, W, 2) in pixels from ``before`` to ``after`` (8-bit RGB), Deforum's way."""
    device = torch.device(device)
    model, transforms = raft_model(device)
    first, second = (
        torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255).unsqueeze(0)
        for image in (before, after)
    )
    first, second = transforms(first, second)
    with torch.no_grad():
        flow = model(first.to(device), second.to(device), num_flow_updates=FLOW_UPDATES)[-1]
    return np.ascontiguousarray(flow[0].permute(1, 2, 0).cpu().numpy())
