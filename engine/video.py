"""Frames -> H.264 video (and GIF) with imageio-ffmpeg's ffmpeg; the soundtrack muxed in sync.

Every file appears under its name only once ffmpeg has finished it without an error; a failure
(a full disk, a killed ffmpeg) raises a DriftwaveError in ffmpeg's own words and leaves no half
video behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

from engine.errors import DriftwaveError
from engine.images import to_array, write_image


class H264Writer:
    """ffmpeg encoding the RGB arrays sent to it as H.264 (yuv420p, so every player takes it).

    imageio-ffmpeg's writer never looks at ffmpeg's exit status, so a video cut short by a full
    disk passed as written: this one does, and ``close`` raises with ffmpeg's reason.
    """

    def __init__(self, path: Path, size: tuple[int, int], fps: float, *, name: str | None = None) -> None:
        width, height = size
        self.path, self.name = path, name or path.name  # the name errors use: the video's, not a temporary's
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo"]
        command += ["-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(Fraction(fps).limit_denominator())]
        command += ["-i", "-", "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "17"]
        if width % 2 or height % 2:  # yuv420p needs even sizes
            command += ["-vf", f"scale={width + width % 2}:{height + height % 2}"]
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 - what ffmpeg says, read once it exits
        self.process = subprocess.Popen(
            [*command, str(path)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._errors
        )
        self._failure: DriftwaveError | None = None

    def send(self, frame: np.ndarray) -> None:
        try:
            self.process.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
        except OSError as error:  # ffmpeg has stopped: close() says why
            self.close()
            self.path.unlink(missing_ok=True)
            raise DriftwaveError(f"ffmpeg stopped reading the frames of {self.name}: {error}") from None

    def close(self) -> None:
        """Wait for ffmpeg to finish the file; raise (each time asked) when it could not."""
        if self._failure is not None:
            raise self._failure
        if self.process.returncode is None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
            self.process.wait()
            self._errors.seek(0)
            said = self._errors.read().decode(errors="replace")
            self._errors.close()
            if self.process.returncode != 0:
                self.path.unlink(missing_ok=True)
                self._failure = DriftwaveError(
                    f"ffmpeg could not write {self.name}: {_reason(self.process.returncode, said)}"
                )
                raise self._failure

    def abort(self) -> None:
        """Stop ffmpeg and remove what it wrote (the frames could not all be read)."""
        if self.process.returncode is None:
            self.process.kill()
            with contextlib.suppress(OSError):
                self.process.stdin.close()
            self.process.wait()
            self._errors.close()
        self.path.unlink(missing_ok=True)


def _reason(returncode: int, said: str) -> str:
    """What went wrong, from ffmpeg's exit status and what it printed."""
    if returncode < 0:
        number = -returncode
        if number == signal.SIGXFSZ:  # killed for writing past the file size limit
            return os.strerror(errno.EFBIG)
        return f"ffmpeg was stopped by {signal.Signals(number).name}"
    lines = [re.sub(r"^\[[^\]]*\]\s*", "", line.strip()) for line in said.splitlines()]  # no "[out#0/mp4 @ 0x..]"
    return "; ".join(dict.fromkeys(line for line in lines if line))[-300:] or f"ffmpeg exited with status {returncode}"


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
    return encode_video((read_frame(frame) for frame in frames), path, fps, audio=audio, audio_offset=audio_offset)


def encode_video(
    pictures: Iterable[np.ndarray], path: Path, fps: float, *, audio: Path | None = None, audio_offset: float = 0.0
) -> Path:
    """Encode the RGB ``pictures`` (at least one) as ``path``, with ``audio`` from ``audio_offset``."""
    pictures = iter(pictures)
    first = next(pictures)
    height, width = first.shape[:2]
    silent = path.with_name(f".{path.stem}.silent{path.suffix}")
    writer = H264Writer(silent, (width, height), fps, name=path.name)
    try:
        writer.send(first)
        for picture in pictures:
            writer.send(picture)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return mux_audio(silent, audio, audio_offset, path)


def kept_as_images(pictures: Iterable[np.ndarray], folder: Path) -> Iterator[np.ndarray]:
    """``pictures``, each also written to ``folder`` as 000000.png, 000001.png... as it passes."""
    folder.mkdir(exist_ok=True)
    for index, picture in enumerate(pictures):
        write_image(picture, folder / f"{index:06}.png")
        yield picture


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
        raise DriftwaveError(
            f"ffmpeg could not add the soundtrack {audio}: {_reason(result.returncode, result.stderr)}"
        )
    os.replace(temporary, path)
    return path


class StreamRecorder:
    """A video of frames arriving at their own pace, at a constant rate: each frame slot shows
    the newest frame ready by its time (held while rendering is slower than the rate)."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        self.path, self.fps = path, fps
        self.silent = path.with_name(f".{path.stem}.silent{path.suffix}")
        self.writer = H264Writer(self.silent, size, fps, name=path.name)
        self.slots = 0
        self.shown: np.ndarray | None = None

    def add(self, image, seconds: float) -> None:
        """``image`` (a (1, 3, H, W) tensor) became ready ``seconds`` after the start."""
        picture = to_array(image)
        self._hold_until(seconds, picture)
        self.shown = picture

    def close(self, seconds: float, audio: Path | None = None, audio_offset: float = 0.0) -> Path:
        """End at ``seconds``; mux ``audio`` (which started ``-audio_offset`` s before frame 0)."""
        try:
            if self.shown is not None:
                self._hold_until(seconds, self.shown)
            self.writer.close()
        except BaseException:
            self.writer.abort()
            raise
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
        raise DriftwaveError(f"ffmpeg could not write {path.name}: {_reason(result.returncode, result.stderr)}")
    os.replace(temporary, path)
    return path


def read_frame(path: Path) -> np.ndarray:
    """A frame file as 8-bit RGB."""
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise DriftwaveError(f"cannot read frame {path}")
    if data.dtype != np.uint8:
        data = (np.clip(data.astype(np.float32) / (65535.0 if data.dtype == np.uint16 else 1.0), 0, 1) * 255).round()
        data = data.astype(np.uint8)
    return cv2.cvtColor(data, cv2.COLOR_BGR2RGB)
