"""Dense optical flow: measured with OpenCV on 8-bit copies (Deforum's methods and presets), and
pictures moved along it on the device with ``grid_sample``.

One place for what hybrid video, optical-flow cadence, the optical-flow redo and the output's
frame interpolation all need. A flow is (H, W, 2) in pixels: the content at ``p`` in the first
picture is at ``p + flow[p]`` in the second. Moving a picture along a flow reads each pixel from
where the flow came from (Deforum's ``image_transform_optical_flow``: a remap at ``p - flow``).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from engine.errors import DriftwaveError
from engine.images import to_array
from engine.motion import warp
from engine.raft import check_raft, raft_flow

CONTRIB_FLOWS = {"DenseRLOF": "calcOpticalFlowDenseRLOF", "SF": "calcOpticalFlowSF"}  # opencv-contrib only


def check_flow_method(method: str, field: str, size: tuple[int, int]) -> None:
    """Before the first frame: a flow method this machine can measure on pictures of ``size``
    (width, height); ``field`` names the setting."""
    if method == "RAFT":
        check_raft(field, *size)
    if method in CONTRIB_FLOWS and not hasattr(getattr(cv2, "optflow", None), CONTRIB_FLOWS[method]):
        raise DriftwaveError(
            f"the {method} optical flow needs opencv-contrib-python, which is not installed",
            field=field,
            hint="use RAFT, DIS Medium, DIS Fine or Farneback (or install opencv-contrib-python-headless instead of "
            "opencv-python-headless)",
        )


def estimate_flow(before: np.ndarray, after: np.ndarray, method: str, device: torch.device | str = "cpu") -> np.ndarray:
    """Dense flow (H, W, 2) in pixels from ``before`` to ``after`` (8-bit RGB), as Deforum's
    ``get_flow_from_images`` measures it (RAFT on ``device``, its DIS presets, its normal Farneback)."""
    if method == "RAFT":
        return raft_flow(before, after, device)
    if method in CONTRIB_FLOWS:
        return getattr(cv2.optflow, CONTRIB_FLOWS[method])(before, after, None)
    first, second = (cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) for image in (before, after))
    if method == "Farneback":
        return cv2.calcOpticalFlowFarneback(first, second, None, 0.5, 5, 21, 5, 7, 1.2, 0)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    if method == "DIS Fine":  # Deforum's fine preset
        dis.setGradientDescentIterations(192)
        dis.setFinestScale(0)
        dis.setPatchSize(8)
        dis.setPatchStride(4)
    return dis.calc(first, second, None)


def flow_between(before: torch.Tensor, after: torch.Tensor, method: str) -> torch.Tensor:
    """The flow (H, W, 2) from ``before`` to ``after`` (pictures on the device), on the device."""
    flow = estimate_flow(to_array(before), to_array(after), method, before.device)
    return torch.from_numpy(np.ascontiguousarray(flow)).to(before.device)


def consistency_mask(forward: np.ndarray, backward: np.ndarray, blur: int) -> np.ndarray:
    """1 where following the flow there and back returns to the start (within a pixel), else 0;
    softened by a blur of ``blur`` pixels."""
    height, width = forward.shape[:2]
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    back = cv2.remap(backward, xs + forward[..., 0], ys + forward[..., 1], cv2.INTER_LINEAR, cv2.BORDER_REPLICATE)
    error = np.linalg.norm(forward + back, axis=-1)
    mask = (error < 1.0 + 0.05 * np.linalg.norm(forward, axis=-1)).astype(np.float32)
    return cv2.GaussianBlur(mask, (2 * blur + 1, 2 * blur + 1), 0) if blur else mask


def flow_grid(flow: torch.Tensor) -> torch.Tensor:
    """Sampling grid (1, H, W, 2) that moves the picture along ``flow`` (H, W, 2 pixels): each
    pixel is read from where the flow came from (Deforum's remap at position - flow)."""
    height, width = flow.shape[:2]
    ys, xs = torch.meshgrid(
        torch.arange(height, device=flow.device, dtype=torch.float32),
        torch.arange(width, device=flow.device, dtype=torch.float32),
        indexing="ij",
    )
    source = torch.stack([xs, ys], dim=-1) - flow.float()
    scale = torch.tensor([width, height], device=flow.device, dtype=torch.float32)
    return ((2.0 * source + 1.0) / scale - 1.0).unsqueeze(0)


def along_flow(image: torch.Tensor, flow: torch.Tensor, factor: float = 1.0) -> torch.Tensor:
    """``image`` moved along ``flow`` times ``factor`` (edge pixels come into view)."""
    if factor == 0:
        return image
    return warp(image, flow_grid(flow * factor).to(image.dtype), border="replicate")


def morph(first: torch.Tensor, second: torch.Tensor, share: float, flow: torch.Tensor) -> torch.Tensor:
    """The picture ``share`` of the way from ``first`` to ``second`` along ``flow`` (first to
    second): both moved to that point of the flow, then cross-faded (a flow interpolation)."""
    return along_flow(first, flow, share) * (1.0 - share) + along_flow(second, flow, share - 1.0) * share
