"""Images as tensors: (1, 3, H, W) float32 in [0, 1] on the render device; load and save them.

Frames are written atomically (a temporary name, then a rename), 8- or 16-bit PNG or 32-bit
float TIFF, so a failed or interrupted write never leaves a half-written frame.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from engine.errors import DriftwaveError


def from_array(array: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W, 3) uint8/uint16/float RGB -> (1, 3, H, W) float32 in [0, 1]."""
    if array.dtype == np.uint8:
        scaled = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        scaled = array.astype(np.float32) / 65535.0
    else:
        scaled = array.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(scaled)).permute(2, 0, 1).unsqueeze(0).to(device)


def to_array(image: torch.Tensor, bits: int = 8) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] -> (H, W, 3) RGB array of ``bits`` per channel (32 = float32)."""
    pixels = image.detach().clamp(0, 1)[0].permute(1, 2, 0).float().cpu().numpy()
    if bits == 8:
        return np.round(pixels * 255.0).astype(np.uint8)
    if bits == 16:
        return np.round(pixels * 65535.0).astype(np.uint16)
    return pixels.astype(np.float32)


def through_opencv(image: torch.Tensor, work: Callable[[np.ndarray], np.ndarray]) -> torch.Tensor:
    """``work`` applied to each picture of a (B, C, H, W) CPU float32 tensor as OpenCV holds it,
    (H, W, C): channels merged by OpenCV and copied back into one new tensor, far faster than
    transposing copies."""
    output = None
    for index, picture in enumerate(image):
        result = work(cv2.merge([channel.numpy() for channel in picture]))
        result = result.reshape(*result.shape[:2], -1)  # OpenCV gives one channel as (H, W)
        if output is None:
            output = np.empty((len(image), result.shape[2], *result.shape[:2]), result.dtype)
        np.copyto(output[index], result.transpose(2, 0, 1))
    return torch.from_numpy(output)


def per_plane(image: torch.Tensor, work: Callable[[np.ndarray, np.ndarray], object]) -> torch.Tensor:
    """``work(plane, out)`` on every (H, W) plane of a contiguous (B, C, H, W) CPU tensor, each
    written into the plane of one new tensor: for OpenCV's one-channel work, no merging at all."""
    planes = image.contiguous().numpy()
    output = np.empty_like(planes)
    height, width = planes.shape[-2:]
    for plane, out in zip(planes.reshape(-1, height, width), output.reshape(-1, height, width), strict=True):
        work(plane, out)
    return torch.from_numpy(output)


def load_image(path: str | Path, size: tuple[int, int] | None = None, *, field: str = "image") -> np.ndarray:
    """Read an image file as (H, W, 4) RGBA uint8, resized to ``size`` = (W, H) if given."""
    path = Path(path)
    if not path.is_file():
        raise DriftwaveError(f"{path} does not exist", field=field, hint="give the path of an image file")
    data = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise DriftwaveError(f"{path} is not an image this program can read", field=field, hint="use PNG or JPEG")
    if data.dtype == np.uint16:
        data = (data / 257).astype(np.uint8)
    if data.ndim == 2:
        data = cv2.cvtColor(data, cv2.COLOR_GRAY2BGRA)
    elif data.shape[2] == 3:
        data = cv2.cvtColor(data, cv2.COLOR_BGR2BGRA)
    rgba = cv2.cvtColor(data, cv2.COLOR_BGRA2RGBA)
    if size is not None and (rgba.shape[1], rgba.shape[0]) != size:
        rgba = cv2.resize(rgba, size, interpolation=cv2.INTER_AREA)
    return rgba


def write_image(image: torch.Tensor | np.ndarray, path: str | Path, *, bits: int = 8) -> Path:
    """Write atomically: encode, write a hidden temporary file, then rename it into place."""
    path = Path(path)
    array = to_array(image, bits) if isinstance(image, torch.Tensor) else image
    if bits == 32 and path.suffix.lower() not in (".tif", ".tiff", ".exr"):
        path = path.with_suffix(".tiff")
    bgr = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array  # (H, W): grayscale
    ok, encoded = cv2.imencode(path.suffix or ".png", bgr)
    if not ok:
        raise DriftwaveError(f"cannot encode {path.name}", hint="use a .png file name")
    temporary = path.with_name(f".{path.name}.part")
    try:
        with open(temporary, "wb") as handle:
            handle.write(encoded.tobytes())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        if temporary.is_file():
            temporary.unlink()
        raise DriftwaveError(
            f"cannot write {path}: {error.strerror or error}",
            hint="free some disk space or choose another outdir; finished frames are kept",
        ) from None
    return path
