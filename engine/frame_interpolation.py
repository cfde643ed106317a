"""Frame interpolation of the output (Deforum's RIFE/FILM step, by optical flow without a model):
after the render, ``video_xN.mp4`` holds N frames per rendered frame.

Between each rendered frame and the next, N - 1 in-betweens are morphed along the flow measured
between them (DIS Medium); after the last frame it is held N times, so rendered frame i is frame
i * N of the new video. At N times the frame rate the video lasts as long as the render's and
takes its soundtrack at the same offset, in sync; with slow motion it plays at N / slow-mo times
the rate, slower, and silent (as Deforum's).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from engine.flow import flow_between, morph
from engine.images import from_array, to_array
from engine.settings import VideoOutputSettings
from engine.video import encode_video, kept_as_images, read_frame

FLOW_METHOD = "DIS Medium"


def interpolated(frames: list[Path], amount: int) -> Iterator[np.ndarray]:
    """Each frame (8-bit RGB), then ``amount`` - 1 in-betweens towards the next; the last held."""
    following = from_array(read_frame(frames[0]))
    for index in range(len(frames)):
        current = following
        yield to_array(current)
        if index + 1 == len(frames):
            yield from (to_array(current) for _ in range(amount - 1))
            return
        following = from_array(read_frame(frames[index + 1]))
        flow = flow_between(current, following, FLOW_METHOD)
        for step in range(1, amount):
            yield to_array(morph(current, following, step / amount, flow))


def interpolated_name(options: VideoOutputSettings) -> str:
    """``video_x2.mp4``; slow motion: ``video_x2_slow2.mp4``."""
    slow = f"_slow{options.frame_interpolation_slow_mo_amount}" if options.frame_interpolation_slow_mo_enabled else ""
    return f"video_x{options.frame_interpolation_x_amount}{slow}.mp4"


def write_interpolated_video(
    frames: list[Path], folder: Path, fps: float, options: VideoOutputSettings, *, audio: Path | None, offset: float
) -> Path:
    """``folder/video_xN.mp4`` of ``frames`` (and the frames in ``folder/interpolated_xN/`` when
    they are kept); the soundtrack ``audio`` from ``offset`` unless in slow motion."""
    amount = options.frame_interpolation_x_amount
    rate = fps * amount
    if options.frame_interpolation_slow_mo_enabled:
        rate, audio = rate / options.frame_interpolation_slow_mo_amount, None
    pictures = interpolated(frames, amount)
    if options.frame_interpolation_keep_imgs:
        pictures = kept_as_images(pictures, folder / f"interpolated_x{amount}")
    return encode_video(pictures, folder / interpolated_name(options), rate, audio=audio, audio_offset=offset)
