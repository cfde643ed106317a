"""Read an audio file as mono float32 samples at its own rate (soundfile, ffmpeg for the rest)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import DriftwaveError


class AudioError(DriftwaveError):
    """An audio file, filter or device problem the user can fix."""


@dataclass(frozen=True)
class Track:
    samples: np.ndarray  # mono float32 in [-1, 1]
    rate: int
    path: Path

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


def load_audio(path: str | Path, *, field: str = "audio.file") -> Track:
    """wav/flac/ogg through soundfile; mp3, m4a and anything else ffmpeg reads through ffmpeg."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path} does not exist", field=field, hint="give the path of an audio file")
    try:
        import soundfile

        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        samples = mono(data)
    except Exception:  # soundfile cannot read it: let ffmpeg try
        samples, rate = _decode_with_ffmpeg(path, field)
    if samples.size == 0:
        raise AudioError(f"{path.name} holds no audio", field=field, hint="choose a file with sound in it")
    return Track(np.ascontiguousarray(samples, dtype=np.float32), int(rate), path)


def track_seconds(path: str | Path, *, field: str = "audio.file") -> float:
    """The track's length, from its header where soundfile reads one (no decoding)."""
    try:
        import soundfile

        info = soundfile.info(str(path))
        return info.frames / info.samplerate
    except Exception:  # not soundfile's, or not there: the full reading says what is wrong
        return load_audio(path, field=field).seconds


def _decode_with_ffmpeg(path: Path, field: str) -> tuple[np.ndarray, int]:
    import imageio_ffmpeg

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    probe = subprocess.run([ffmpeg, "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    found = re.search(r"Audio:.*?(\d+) Hz", probe.stderr)
    if not found:
        raise AudioError(
            f"{path.name} is not an audio file this program can read",
            field=field,
            hint="use wav, flac, ogg, mp3 or m4a",
        )
    rate = int(found.group(1))
    decoded = subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", str(rate), "-f", "f32le", "pipe:1"],
        capture_output=True,
    )
    if decoded.returncode != 0:
        raise AudioError(
            f"{path.name} could not be decoded ({decoded.stderr.decode(errors='replace')[-200:]})",
            field=field,
            hint="the file may be damaged; try converting it to wav",
        )
    return np.frombuffer(decoded.stdout, dtype=np.float32).copy(), rate


def mono(channels: np.ndarray) -> np.ndarray:
    """The channels' mean, frame by frame, as ``channels.mean(axis=1)`` gives it: below 8
    channels numpy adds them in order, so a column at a time gives the same bits without its
    slow strided pass (8x faster for stereo)."""
    if channels.shape[1] >= 8:  # numpy adds 8 or more in interleaved partial sums
        return channels.mean(axis=1)
    total = channels[:, 0].copy()
    for column in range(1, channels.shape[1]):
        total += channels[:, column]
    total /= channels.shape[1]
    return total
