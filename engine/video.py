"""Frames -> H.264 video (and GIF) with imageio-ffmpeg's ffmpeg; the soundtrack muxed in sync."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

from engine.errors import DriftwaveError
from engine.images import to_array


def h264_writer(path: Path, size: tuple[int, int], fps: float):
    """A started imageio-ffmpeg writer (yuv420p, so every player takes it): send it RGB arrays."""
    writer = imageio_ffmpeg.write_frames(
        str(path),
        size,
        fps=fps,
        codec="libx264",
        pix_fmt_out="yuv420p",
        quality=None,
        output_params=["-crf", "17"],
        macro_block_size=2,
        ffmpeg_log_level="error",
    )
    writer.send(None)
    return writer


def write_video(
    frames: list[Path],
    path: Path,
    fps: float,
    *,
    audio: Path | None = None,
    audio_offset: float = 0.0,
    max_frames: int = 0,
) -> Path:
    """Encode ``frames`` and mux ``audio`` from ``audio_offset``."""
    if max_frames:
        frames = frames[:max_frames]
    if not frames:
        raise DriftwaveError("there are no frames to make a video of")
    first = _read(frames[0])
    height, width = first.shape[:2]
    silent = path.with_name(f".{path.stem}.silent{path.suffix}")
    writer = h264_writer(silent, (width, height), fps)
    for frame in frames:
        writer.send(np.ascontiguousarray(_read(frame)))
    writer.close()
    return mux_audio(silent, audio, audio_offset, path)


def mux_audio(silent: Path, audio: Path | None, offset: float, path: Path) -> Path:
    """``silent`` with ``audio`` from ``offset`` seconds (negative: the sound starts that late)
    as ``path``, atomically; ``silent`` is used up."""
    if audio is None:
        os.replace(silent, path)
        return path
    temporary = path.with_name(f".{path.name}.part{path.suffix}")
    timing = ["-ss", f"{offset:.6f}"] if offset >= 0 else ["-itsoffset", f"{-offset:.6f}"]
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(silent), *timing]
    command += ["-i", str(audio), "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", "-b:a", "192k"]
    command += ["-shortest", str(temporary)]
    result = subprocess.run(command, capture_output=True, text=True)
    silent.unlink(missing_ok=True)
    if result.returncode != 0:
        temporary.unlink(missing_ok=True)
        raise DriftwaveError(f"ffmpeg could not add the soundtrack {audio}: {result.stderr.strip()[-300:]}")
    os.replace(temporary, path)
    return path


class StreamRecorder:
    """A video of frames arriving at their own pace, at a constant rate: each frame slot shows
    the newest frame ready by its time (held while rendering is slower than the rate)."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        self.path, self.fps = path, fps
        self.silent = path.with_name(f".{path.stem}.silent{path.suffix}")
        self.writer = h264_writer(self.silent, size, fps)
        self.slots = 0
        self.shown: np.ndarray | None = None

    def add(self, image, seconds: float) -> None:
        """``image`` (a (1, 3, H, W) tensor) became ready ``seconds`` after the start."""
        picture = to_array(image)
        self._hold_until(seconds, picture)
        self.shown = picture

    def close(self, seconds: float, audio: Path | None = None, audio_offset: float = 0.0) -> Path:
        """End at ``seconds``; mux ``audio`` (which started ``-audio_offset`` s before frame 0)."""
        if self.shown is not None:
            self._hold_until(seconds, self.shown)
        self.writer.close()
        return mux_audio(self.silent, audio, audio_offset, self.path)

    def _hold_until(self, seconds: float, first: np.ndarray) -> None:
        while self.slots / self.fps < seconds:
            self.writer.send(np.ascontiguousarray(self.shown if self.shown is not None else first))
            self.slots += 1


def write_gif(video: Path, path: Path, fps: float) -> Path:
    temporary = path.with_name(f".{path.name}.part.gif")
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-y",
        "-loglevel",
        "error",
        "-i",
        str(video),
        "-vf",
        f"fps={fps:g},split[a][b];[a]palettegen[p];[b][p]paletteuse",
        str(temporary),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        temporary.unlink(missing_ok=True)
        raise DriftwaveError(f"ffmpeg could not write {path.name}: {result.stderr.strip()[-300:]}")
    os.replace(temporary, path)
    return path


def _read(path: Path) -> np.ndarray:
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise DriftwaveError(f"cannot read frame {path}")
    if data.dtype != np.uint8:
        data = (np.clip(data.astype(np.float32) / (65535.0 if data.dtype == np.uint16 else 1.0), 0, 1) * 255).round()
        data = data.astype(np.uint8)
    return cv2.cvtColor(data, cv2.COLOR_BGR2RGB)
