"""Test media made on the spot: lossless videos from arrays, with or without a tone."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import soundfile


def make_video(path: Path, frames: list[np.ndarray], fps: float = 10) -> Path:
    """A lossless (libx264rgb, crf 0) video of the (H, W, 3) uint8 ``frames``."""
    height, width = frames[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (width, height),
        fps=fps,
        codec="libx264rgb",
        pix_fmt_out="rgb24",
        quality=None,
        output_params=["-crf", "0"],
        macro_block_size=1,
        ffmpeg_log_level="error",
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path


def solid_frames(levels: list[int], size: tuple[int, int] = (64, 48)) -> list[np.ndarray]:
    """One solid gray frame of ``size`` = (W, H) per level."""
    return [np.full((size[1], size[0], 3), level, np.uint8) for level in levels]


def with_tone(video: Path, path: Path, seconds: float = 2.0) -> Path:
    """``video`` with a 440 Hz AAC soundtrack added."""
    rate = 8000
    tone = path.with_suffix(".wav")
    soundfile.write(tone, 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate), rate)
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(video), "-i", str(tone)]
    command += ["-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", str(path)]
    subprocess.run(command, check=True)
    return path
