"""Frame interpolation of the output (Deforum's RIFE/FILM step): after the render,
``video_xN.mp4`` holds N frames per rendered frame.

Between each rendered frame and the next, N - 1 in-betweens: morphed along the flow measured
between them (DIS Medium; no model), or RIFE v4.6's (engine.rife). After the last frame it is
held N times, so rendered frame i is frame i * N of the new video. At N times the frame rate
the video lasts as long as the render's and takes its soundtrack at the same offset, in sync;
with slow motion it plays at N / slow-mo times the rate, slower, and silent (as Deforum's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from engine.flow import flow_between, morph
from engine.images import from_array, to_array
from engine.rife import load_rife, rife_inbetweens
from engine.settings import VideoOutputSettings
from engine.video import encode_video, kept_as_images, read_frame

FLOW_METHOD = "DIS Medium"
FIELD = "video.frame_interpolation_model"
Inbetweens = Callable[[np.ndarray, np.ndarray, int], list[np.ndarray]]


def interpolated(frames: list[Path], amount: int, inbetweens: Inbetweens) -> Iterator[np.ndarray]:
    """Each frame (8-bit RGB), then ``amount`` - 1 in-betweens towards the next; the last held."""
    following = read_frame(frames[0])
    for index in range(len(frames)):
        current = following
        yield current
        if index + 1 == len(frames):
            yield from (current for _ in range(amount - 1))
            return
        following = read_frame(frames[index + 1])
        yield from inbetweens(current, following, amount)


def flow_inbetweens(first: np.ndarray, second: np.ndarray, amount: int) -> list[np.ndarray]:
    """In-betweens morphed along the flow measured between the two frames."""
    current, following = from_array(first), from_array(second)
    flow = flow_between(current, following, FLOW_METHOD)
    return [to_array(morph(current, following, step / amount, flow)) for step in range(1, amount)]


def inbetweens_for(options: VideoOutputSettings, device: torch.device | str) -> Inbetweens:
    """The engine's in-betweens: along the flow, or RIFE v4.6's (its weights loaded on ``device``)."""
    if options.frame_interpolation_engine != "RIFE v4.6":
        return flow_inbetweens
    network = load_rife(rife_weights(options), device, FIELD)
    return lambda first, second, amount: rife_inbetweens(network, first, second, amount)


def rife_weights(options: VideoOutputSettings) -> str:
    """The weights file set, or RIFE46.pkl where torch.hub keeps downloaded weights."""
    return options.frame_interpolation_model or str(Path(torch.hub.get_dir()) / "checkpoints" / "RIFE46.pkl")


def check_interpolation(options: VideoOutputSettings) -> None:
    """Before the render: RIFE's weights load (on the CPU), or a clear error naming the field."""
    if options.frame_interpolation_engine == "RIFE v4.6":
        load_rife(rife_weights(options), "cpu", FIELD)


def interpolated_name(options: VideoOutputSettings) -> str:
    """``video_x2.mp4``; slow motion: ``video_x2_slow2.mp4``."""
    slow = f"_slow{options.frame_interpolation_slow_mo_amount}" if options.frame_interpolation_slow_mo_enabled else ""
    return f"video_x{options.frame_interpolation_x_amount}{slow}.mp4"


def write_interpolated_video(
    frames: list[Path],
    folder: Path,
    fps: float,
    options: VideoOutputSettings,
    device: torch.device | str = "cpu",
    *,
    audio: Path | None,
    offset: float,
) -> Path:
    """``folder/video_xN.mp4`` of ``frames`` (and the frames in ``folder/interpolated_xN/`` when
    they are kept); the soundtrack ``audio`` from ``offset`` unless in slow motion."""
    amount = options.frame_interpolation_x_amount
    rate = fps * amount
    if options.frame_interpolation_slow_mo_enabled:
        rate, audio = rate / options.frame_interpolation_slow_mo_amount, None
    pictures = interpolated(frames, amount, inbetweens_for(options, device))
    if options.frame_interpolation_keep_imgs:
        pictures = kept_as_images(pictures, folder / f"interpolated_x{amount}")
    return encode_video(pictures, folder / interpolated_name(options), rate, audio=audio, audio_offset=offset)
