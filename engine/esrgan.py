"""Real-ESRGAN's two architectures, read from the released model files.

``RRDBNet`` is BasicSR's (RealESRGAN_x4plus, x4plus_anime_6B, x2plus: the x2 and x1 models
pixel-unshuffle their input), ``SRVGGNetCompact`` is Real-ESRGAN's compact one
(realesr-animevideov3, realesr-general-x4v3). The layer names are the releases', so their
``.pth`` (``params_ema`` / ``params``) and ``.safetensors`` files load as they are; the sizes
are read from the weights.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class ResidualDenseBlock(nn.Module):
    def __init__(self, features: int, growth: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, growth, 3, 1, 1)
        self.conv2 = nn.Conv2d(features + growth, growth, 3, 1, 1)
        self.conv3 = nn.Conv2d(features + 2 * growth, growth, 3, 1, 1)
        self.conv4 = nn.Conv2d(features + 3 * growth, growth, 3, 1, 1)
        self.conv5 = nn.Conv2d(features + 4 * growth, features, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            outputs.append(F.leaky_relu(conv(torch.cat(outputs, 1)), 0.2))
        return self.conv5(torch.cat(outputs, 1)) * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, features: int, growth: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(features, growth)
        self.rdb2 = ResidualDenseBlock(features, growth)
        self.rdb3 = ResidualDenseBlock(features, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN's generator: RRDB blocks, then two nearest x2 upsamplings (x4 out of its input)."""

    def __init__(self, scale: int = 4, features: int = 64, blocks: int = 23, growth: int = 32) -> None:
        super().__init__()
        self.scale = scale
        self.size_multiple = 4 // scale  # the pixel unshuffle's
        unshuffled = 3 * {4: 1, 2: 4, 1: 16}[scale]
        self.conv_first = nn.Conv2d(unshuffled, features, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(features, growth) for _ in range(blocks)))
        self.conv_body = nn.Conv2d(features, features, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(features, features, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(features, features, 3, 1, 1)
        self.conv_hr = nn.Conv2d(features, features, 3, 1, 1)
        self.conv_last = nn.Conv2d(features, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale < 4:
            x = F.pixel_unshuffle(x, 4 // self.scale)
        features = self.conv_first(x)
        features = features + self.conv_body(self.body(features))
        for conv in (self.conv_up1, self.conv_up2):
            features = F.leaky_relu(conv(F.interpolate(features, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(features), 0.2))


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN's compact network: plain convolutions and PReLUs, a pixel shuffle, plus the
    input upsampled (nearest)."""

    def __init__(self, scale: int = 4, features: int = 64, convolutions: int = 16) -> None:
        super().__init__()
        self.scale, self.size_multiple = scale, 1
        layers: list[nn.Module] = [nn.Conv2d(3, features, 3, 1, 1), nn.PReLU(features)]
        for _ in range(convolutions):
            layers += [nn.Conv2d(features, features, 3, 1, 1), nn.PReLU(features)]
        layers.append(nn.Conv2d(features, 3 * scale * scale, 3, 1, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        upsampled = F.interpolate(x, scale_factor=self.scale, mode="nearest")
        return F.pixel_shuffle(self.body(x), self.scale) + upsampled


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A released model file's state dict (``params_ema`` first, as Real-ESRGAN loads it)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        weights = load_file(str(path))
    else:
        weights = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("params_ema", "params"):
        if isinstance(weights, dict) and isinstance(weights.get(key), dict):
            return weights[key]
    return weights


def network_for(weights: dict[str, torch.Tensor]) -> nn.Module:
    """The architecture the weights are of, sized from them and loaded (ValueError: neither)."""
    if "conv_first.weight" in weights:
        first = weights["conv_first.weight"]
        blocks = len({match[1] for key in weights if (match := re.match(r"body\.(\d+)\.rdb1\.conv1\.weight", key))})
        growth = weights["body.0.rdb1.conv1.weight"].shape[0]
        scale = {3: 4, 12: 2, 48: 1}[first.shape[1]]
        network: nn.Module = RRDBNet(scale, first.shape[0], blocks, growth)
    elif "body.0.weight" in weights and weights["body.0.weight"].shape[1] == 3:
        convolutions = [key for key in weights if re.fullmatch(r"body\.\d+\.bias", key)]
        last = weights[f"body.{max(int(key.split('.')[1]) for key in convolutions)}.weight"]
        scale = round((last.shape[0] / 3) ** 0.5)
        network = SRVGGNetCompact(scale, weights["body.0.weight"].shape[0], len(convolutions) - 2)
    else:
        raise ValueError("not a Real-ESRGAN model (RRDBNet or SRVGGNetCompact weights)")
    network.load_state_dict(weights)
    return network.eval()
