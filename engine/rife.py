"""RIFE v4.6 (Practical-RIFE's IFNet_HDv3), Deforum's default frame interpolator: the network with
its parameters' names, so the released ``RIFE46.pkl`` (``flownet.pkl``) loads as it is, and the
in-betweens as Deforum's ``inference_video`` makes them: the pictures padded to a multiple of 128,
one inference per in-between at times (i + 1) / N, the result cut back and truncated to 8 bits.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import DriftwaveError

PADDING = 128  # Deforum's max(128, 128 / scale) at scale 1
WEIGHTS_URL = "https://github.com/hithereai/Practical-RIFE/releases/download/rife46/RIFE46.pkl"  # Deforum's


def _conv(in_planes: int, out_planes: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 3, 2, 1, bias=True), nn.LeakyReLU(0.2, True))


class ResConv(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones((1, channels, 1, 1)))
        self.relu = nn.LeakyReLU(0.2, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x) * self.beta + x)


class IFBlock(nn.Module):
    """One scale: flow (4 channels, both ways) and mask from the pictures, time and the flow so far."""

    def __init__(self, in_planes: int, channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(_conv(in_planes, channels // 2), _conv(channels // 2, channels))
        self.convblock = nn.Sequential(*(ResConv(channels) for _ in range(8)))
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(channels, 4 * 6, 4, 2, 1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor, flow: torch.Tensor | None, scale: float):
        x = F.interpolate(x, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)
        if flow is not None:
            flow = F.interpolate(flow, scale_factor=1.0 / scale, mode="bilinear", align_corners=False) * 1.0 / scale
            x = torch.cat((x, flow), 1)
        out = self.lastconv(self.convblock(self.conv0(x)))
        out = F.interpolate(out, scale_factor=scale, mode="bilinear", align_corners=False)
        return out[:, :4] * scale, out[:, 4:5]


class IFNet(nn.Module):
    """Four blocks, coarse to fine; the in-between the two pictures warped and blended by the mask."""

    def __init__(self) -> None:
        super().__init__()
        self.block0 = IFBlock(7, 192)
        self.block1 = IFBlock(8 + 4, 128)
        self.block2 = IFBlock(8 + 4, 96)
        self.block3 = IFBlock(8 + 4, 64)

    def forward(self, first: torch.Tensor, second: torch.Tensor, time: float, scale: float = 1.0) -> torch.Tensor:
        times = first[:, :1] * 0 + time
        flow = mask = None
        warped_first, warped_second = first, second
        for block, level in zip((self.block0, self.block1, self.block2, self.block3), (8, 4, 2, 1), strict=True):
            if flow is None:
                flow, mask = block(torch.cat((first, second, times), 1), None, level / scale)
            else:
                step, mask_step = block(torch.cat((warped_first, warped_second, times, mask), 1), flow, level / scale)
                flow, mask = flow + step, mask + mask_step
            warped_first, warped_second = backward_warp(first, flow[:, :2]), backward_warp(second, flow[:, 2:4])
        weight = torch.sigmoid(mask)
        return warped_first * weight + warped_second * (1 - weight)


def backward_warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``image`` read at each pixel plus ``flow`` (pixels), bilinear, border-clamped (RIFE's warp)."""
    batch, _, height, width = flow.shape
    horizontal = torch.linspace(-1.0, 1.0, width, device=flow.device).view(1, 1, 1, width).expand(batch, -1, height, -1)
    vertical = torch.linspace(-1.0, 1.0, height, device=flow.device).view(1, 1, height, 1).expand(batch, -1, -1, width)
    scaled = torch.cat(
        [flow[:, 0:1] / ((image.shape[3] - 1.0) / 2.0), flow[:, 1:2] / ((image.shape[2] - 1.0) / 2.0)], 1
    )
    grid = (torch.cat([horizontal, vertical], 1) + scaled).permute(0, 2, 3, 1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def load_rife(path: str, device: torch.device | str, field: str) -> IFNet:
    """The released weights (a state dict whose keys start ``module.``, or without it) in an IFNet."""
    file = Path(path).expanduser()
    hint = f"set it to RIFE v4.6's weights, RIFE46.pkl ({WEIGHTS_URL}), or use the Flow engine, which needs none"
    if not file.is_file():
        raise DriftwaveError(f"RIFE v4.6 needs its weights file; {path or 'none'} is not one", field=field, hint=hint)
    try:
        weights = torch.load(file, map_location="cpu", weights_only=True)
        network = IFNet()
        network.load_state_dict({key.removeprefix("module."): value for key, value in weights.items()})
    except (OSError, RuntimeError, AttributeError, ValueError, EOFError, pickle.UnpicklingError) as error:
        raise DriftwaveError(
            f"{file.name} is not RIFE v4.6's weights: {str(error).splitlines()[0]}", field=field, hint=hint
        ) from None
    return network.to(device).eval()


def rife_inbetweens(network: IFNet, first: np.ndarray, second: np.ndarray, amount: int) -> list[np.ndarray]:
    """The ``amount`` - 1 pictures (8-bit RGB) between two frames, as Deforum's ``make_inference``."""
    device = next(network.parameters()).device
    height, width = first.shape[:2]
    padding = (0, -width % PADDING, 0, -height % PADDING)

    def tensor(picture: np.ndarray) -> torch.Tensor:
        pixels = torch.from_numpy(np.ascontiguousarray(picture.transpose(2, 0, 1))).to(device)
        return F.pad(pixels.unsqueeze(0).float() / 255.0, padding)

    def picture(pixels: torch.Tensor) -> np.ndarray:
        return (pixels[0] * 255.0).byte().cpu().numpy().transpose(1, 2, 0)[:height, :width]  # truncated, as theirs

    before, after = tensor(first), tensor(second)
    with torch.no_grad():
        return [picture(network(before, after, (step + 1) / amount)) for step in range(amount - 1)]
