"""Upscaling of the output (Deforum's r_upscale_* step): ``video_upscaled_xN.mp4`` after the render.

A model file the user gives runs on the device, tile by tile with a margin (Real-ESRGAN's
``tile_process``), and its output is resized to the factor asked with Lanczos when the model's
own scale differs (Real-ESRGAN's ``outscale``). spandrel loads the file when it is installed
(ESRGAN, SwinIR, HAT and the rest); without it, Real-ESRGAN's two architectures load from
:mod:`engine.esrgan`. ``bicubic`` and ``lanczos`` resize without weights.

Deforum names realesrgan-ncnn's models (realesr-animevideov3, realesrgan-x4plus...); they are not
files here, so those runs upscale with Lanczos and say so.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch

from engine.errors import DriftwaveError, notify
from engine.images import from_array, to_array
from engine.settings import NCNN_UPSCALE_MODELS, VideoOutputSettings
from engine.video import encode_video, kept_as_images, read_frame

FIELD = "video.r_upscale_model"
RESIZERS = {"bicubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4}
HINT = "give a model file (e.g. RealESRGAN_x4plus.pth from github.com/xinntao/Real-ESRGAN), or bicubic / lanczos"
TILE_MARGIN = 10  # input pixels each tile sees beyond its own, as Real-ESRGAN's tile_pad


class Upscaler:
    """``upscale(image, factor)``: (1, 3, H, W) in [0, 1] -> (1, 3, H*factor, W*factor).

    With no network it resizes with ``interpolation``; a network runs tile by tile (``tile``
    input pixels, 0 for the whole frame), each tile padded to a multiple of ``multiple``, and its
    output is resized with Lanczos when its ``scale`` is not the factor.
    """

    def __init__(
        self,
        network: torch.nn.Module | None,
        device: torch.device,
        *,
        scale: int = 1,
        tile: int = 0,
        multiple: int = 1,
        interpolation: int = cv2.INTER_LANCZOS4,
    ) -> None:
        self.network, self.device, self.scale, self.tile = network, device, scale, tile
        self.multiple, self.interpolation = multiple, interpolation

    @torch.inference_mode()
    def upscale(self, image: torch.Tensor, factor: int) -> torch.Tensor:
        height, width = image.shape[-2:]
        if self.network is None:
            return resized(image, (width * factor, height * factor), self.interpolation)
        output = self._tiled(image.to(self.device, torch.float32)).clamp(0, 1)
        if self.scale != factor:
            output = resized(output, (width * factor, height * factor), cv2.INTER_LANCZOS4)
        return output

    def _tiled(self, image: torch.Tensor) -> torch.Tensor:
        """The network over tiles, each seen with TILE_MARGIN pixels around it."""
        height, width = image.shape[-2:]
        tile, scale = self.tile if self.tile > 0 else max(height, width), self.scale
        output = image.new_zeros((1, 3, height * scale, width * scale))
        for top in range(0, height, tile):
            for left in range(0, width, tile):
                bottom, right = min(top + tile, height), min(left + tile, width)
                seen_top, seen_left = max(top - TILE_MARGIN, 0), max(left - TILE_MARGIN, 0)
                seen_bottom, seen_right = min(bottom + TILE_MARGIN, height), min(right + TILE_MARGIN, width)
                part = self._run(image[..., seen_top:seen_bottom, seen_left:seen_right])
                rows = slice((top - seen_top) * scale, (bottom - seen_top) * scale)
                columns = slice((left - seen_left) * scale, (right - seen_left) * scale)
                output[..., top * scale : bottom * scale, left * scale : right * scale] = part[..., rows, columns]
        return output

    def _run(self, tile: torch.Tensor) -> torch.Tensor:
        """The network on ``tile``, reflect-padded to its multiple (Real-ESRGAN's mod_pad)."""
        height, width = tile.shape[-2:]
        pad_bottom, pad_right = -height % self.multiple, -width % self.multiple
        if pad_bottom or pad_right:
            tile = torch.nn.functional.pad(tile, (0, pad_right, 0, pad_bottom), mode="reflect")
        return self.network(tile)[..., : height * self.scale, : width * self.scale]


def resized(image: torch.Tensor, size: tuple[int, int], interpolation: int) -> torch.Tensor:
    """``image`` at ``size`` = (W, H) through OpenCV's resize, on 8-bit pixels as the video has."""
    return from_array(cv2.resize(to_array(image), size, interpolation=interpolation), image.device)


def load_upscaler(name: str, device: torch.device | str, *, tile: int = 256) -> Upscaler:
    """The upscaler ``name`` says: bicubic, lanczos, a Deforum model name (Lanczos, said) or a file."""
    device = torch.device(device)
    if name in RESIZERS:
        return Upscaler(None, device, interpolation=RESIZERS[name])
    if name in NCNN_UPSCALE_MODELS:
        return Upscaler(None, device)
    path = Path(name).expanduser()
    if not path.is_file():
        raise DriftwaveError(f"upscale model {name} does not exist", field=FIELD, hint=HINT)
    try:
        network, scale, multiple = _spandrel(path) or _esrgan(path)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DriftwaveError(f"cannot load the upscale model {name}: {reason}", field=FIELD, hint=HINT) from None
    return Upscaler(network.to(device).eval(), device, scale=scale, tile=tile, multiple=multiple)


def _spandrel(path: Path) -> tuple[torch.nn.Module, int, int] | None:
    """The network, its scale and its size multiple through spandrel, or None where spandrel cannot be
    imported (not installed, or no working torchvision beside it)."""
    try:
        from spandrel import ModelLoader, UnsupportedModelError
    except (ImportError, RuntimeError):
        return None
    try:
        descriptor = ModelLoader().load_from_file(str(path))
    except UnsupportedModelError as error:
        raise ValueError(f"spandrel does not know its architecture ({error})") from None
    return descriptor.model, descriptor.scale, descriptor.size_requirements.multiple_of


def _esrgan(path: Path) -> tuple[torch.nn.Module, int, int]:
    from engine.esrgan import network_for, read_weights

    network = network_for(read_weights(path))
    return network, network.scale, network.size_multiple


def upscaled(frames: list[Path], upscaler: Upscaler, factor: int) -> Iterator[np.ndarray]:
    for frame in frames:
        yield to_array(upscaler.upscale(from_array(read_frame(frame), upscaler.device), factor))


def upscaled_name(options: VideoOutputSettings) -> str:
    return f"video_upscaled_{options.r_upscale_factor}.mp4"


def write_upscaled_video(
    frames: list[Path], folder: Path, fps: float, options: VideoOutputSettings, device, *, audio, offset: float
) -> Path:
    """``folder/video_upscaled_xN.mp4`` of ``frames`` with the render's soundtrack (and the frames in
    ``folder/upscaled_xN/`` when kept)."""
    factor = int(options.r_upscale_factor.removeprefix("x"))
    upscaler = load_upscaler(options.r_upscale_model, device, tile=options.r_upscale_tile)
    pictures = upscaled(frames, upscaler, factor)
    if options.r_upscale_keep_imgs:
        pictures = kept_as_images(pictures, folder / f"upscaled_{options.r_upscale_factor}")
    return encode_video(pictures, folder / upscaled_name(options), fps, audio=audio, audio_offset=offset)


def check_upscale(options: VideoOutputSettings) -> None:
    """Before the render: the upscaler named loads (on the CPU), or a clear error naming the field."""
    if not options.r_upscale_video:
        return
    if options.r_upscale_model in NCNN_UPSCALE_MODELS:
        notify(f"{FIELD}: {options.r_upscale_model} is realesrgan-ncnn's model, not a file here: using Lanczos")
    load_upscaler(options.r_upscale_model, "cpu", tile=options.r_upscale_tile)
