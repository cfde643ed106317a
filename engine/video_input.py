"""Input videos for Video Input mode and hybrid video: probe, extract chosen frames, read them.

Frames are extracted once into a folder of numbered PNGs (``00001.png``...) with an
``extraction.json`` record, and re-used while the source file and the choice of frames stay the
same. To carry an input video's soundtrack into the render, pass the video as ``audio`` to
:func:`engine.video.write_video` when :func:`probe` says it ``has_audio``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import imageio_ffmpeg
import numpy as np
import torch

from engine.errors import DriftwaveError, notify
from engine.images import from_array

if TYPE_CHECKING:
    from engine.settings import VideoInputSettings

RECORD = "extraction.json"
_FRAME_NAME = re.compile(r"\d{5,}\.png")
_HINT = "give an mp4, mov or webm video file"


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    width: int
    height: int
    frames: int
    has_audio: bool


def probe(path: str | Path, field: str) -> VideoInfo:
    """Frame rate, size (as decoded, rotation applied), frame count and whether there is audio.
    Counting the frames decodes the whole video: the answer is kept while the file is unchanged."""
    path = _existing(path, field)
    stat = path.stat()
    return _probe(path, stat.st_mtime_ns, stat.st_size, field)


@functools.lru_cache(maxsize=8)
def _probe(path: Path, modified: int, size: int, field: str) -> VideoInfo:
    log = _ffmpeg(path, field, "-map", "0:v:0", "-f", "null", "-")
    video = re.findall(r"Stream #.*?: Video: .*", log)
    frames = re.findall(r"frame=\s*(\d+)", log)
    size = re.search(r", (\d+)x(\d+)\b", video[-1]) if video else None
    fps = re.search(r"([\d.]+) (?:fps|tbr)\b", video[-1]) if video else None
    if not (size and fps and frames):
        raise DriftwaveError(f"{path} has no video frames ffmpeg can read", field=field, hint=_HINT)
    has_audio = re.search(r"Stream #.*?: Audio: ", log) is not None
    return VideoInfo(float(fps[1]), int(size[1]), int(size[2]), int(frames[-1]), has_audio)


def extract_frames(
    path: str | Path, folder: str | Path, *, nth: int, first: int, last: int, overwrite: bool, field: str
) -> list[Path]:
    """Write source frames ``first, first+nth, ...`` up to ``last`` (inclusive, -1 = the end) as PNGs.

    A complete earlier extraction of the same file (path, size, mtime) with the same choice is
    re-used unless ``overwrite``; otherwise only the numbered PNGs in ``folder`` are replaced.
    """
    path, folder = _existing(path, field), Path(folder)
    if last != -1 and last < first:
        raise DriftwaveError(
            f"extract_to_frame {last} is before extract_from_frame {first}: no frames to use",
            field="video_input.extract_to_frame",
            hint="set it to -1 (to the end) or to a frame at or after extract_from_frame",
        )
    stat = path.stat()
    record = {"source": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    record |= {"nth": nth, "first": first, "last": last}
    if not overwrite and (frames := _reusable(folder, record)) is not None:
        return frames
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RECORD).unlink(missing_ok=True)
    for old in folder.iterdir():
        if _FRAME_NAME.fullmatch(old.name):
            old.unlink()
    frames = _decode(path, folder, nth, first, last, field)
    if not frames:
        total = probe(path, field).frames
        raise DriftwaveError(
            f"extract_from_frame {first} is past the end of {path.name}, which has {total} frames (0..{total - 1})",
            field="video_input.extract_from_frame",
            hint=f"set it below {total}",
        )
    if last != -1 and len(frames) < (last - first) // nth + 1:
        notify(
            f"extract_to_frame {last} is past the end of {path.name} ({probe(path, field).frames} frames): "
            "extracted to its end"
        )
    temporary = folder / f".{RECORD}.part"
    temporary.write_text(json.dumps(record | {"frames": len(frames)}, indent=1))
    os.replace(temporary, folder / RECORD)
    return frames


def open_video_input(
    settings: VideoInputSettings, run_dir: str | Path, size: tuple[int, int], device: torch.device | str = "cpu"
) -> VideoFrames:
    """Extract the init video (and mask video) into ``run_dir``/inputframes (/maskframes) and open them."""
    choice = {
        "nth": settings.extract_nth_frame,
        "first": settings.extract_from_frame,
        "last": settings.extract_to_frame,
        "overwrite": settings.overwrite_extracted_frames,
    }
    run_dir = Path(run_dir)
    frames = extract_frames(
        settings.video_init_path, run_dir / "inputframes", **choice, field="video_input.video_init_path"
    )
    masks = None
    if settings.use_mask_video:
        masks = extract_frames(
            settings.video_mask_path, run_dir / "maskframes", **choice, field="video_input.video_mask_path"
        )
    return VideoFrames(frames, size, device, masks)


class VideoFrames:
    """Extracted video frames read lazily at the render size ``(W, H)`` as tensors on ``device``.

    The optional mask frames say what to keep: white keeps the init video frame unchanged,
    black is fully diffused, grays in between (as the Deforum guide says). A mask video of
    another size is resized to the render size; a mask video shorter than the init video holds
    its last frame for the remaining frames (with a notice); extra mask frames are ignored.
    """

    def __init__(
        self,
        frames: list[Path],
        size: tuple[int, int],
        device: torch.device | str = "cpu",
        masks: list[Path] | None = None,
    ) -> None:
        self.frames, self.size, self.device, self.masks = frames, size, device, masks or []
        if self.masks and len(self.masks) < len(frames):
            notify(
                f"the mask video has {len(self.masks)} frames, the init video {len(frames)}: "
                f"the last mask frame is held for frames {len(self.masks)} to {len(frames) - 1}"
            )

    def __len__(self) -> int:
        return len(self.frames)

    def frame(self, index: int) -> torch.Tensor:
        """The init video frame ``index`` as (1, 3, H, W) in [0, 1]."""
        rgb = cv2.cvtColor(self._read(self.frames[index], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return from_array(rgb, self.device)

    def mask(self, index: int) -> torch.Tensor | None:
        """The mask for frame ``index`` as (1, 1, H, W) in [0, 1] (1 = keep the video frame), or None."""
        if not self.masks:
            return None
        gray = self._read(self.masks[min(index, len(self.masks) - 1)], cv2.IMREAD_GRAYSCALE)
        return from_array(gray[:, :, None], self.device)

    def color_reference(self, index: int, every: int) -> torch.Tensor:
        """The frame whose colors frame ``index`` matches: re-taken every ``every`` frames."""
        return self.frame(index - index % every)

    def _read(self, path: Path, flags: int) -> np.ndarray:
        data = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), flags)
        if data is None:
            raise DriftwaveError(
                f"cannot read the extracted frame {path}",
                field="video_input.overwrite_extracted_frames",
                hint="turn it on to extract the video's frames again",
            )
        height, width = data.shape[:2]
        if (width, height) == self.size:
            return data
        shrink = self.size[0] <= width and self.size[1] <= height
        return cv2.resize(data, self.size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def _existing(path: str | Path, field: str) -> Path:
    if not str(path).strip():
        raise DriftwaveError("no video file is set", field=field, hint=_HINT)
    path = Path(path).expanduser()
    if not path.is_file():
        raise DriftwaveError(f"{path} does not exist", field=field, hint=_HINT)
    return path


def _ffmpeg(path: Path, field: str, *output: str) -> str:
    """Run ffmpeg on ``path`` with ``output`` options; its log, or an error naming ``field``."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-i", str(path), *output]
    result = subprocess.run(command, capture_output=True, text=True, errors="replace")
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"ffmpeg exit status {result.returncode}"
        if "matches no streams" in result.stderr:
            reason = "it has no video track"
        raise DriftwaveError(f"{path} cannot be read as a video ({reason})", field=field, hint=_HINT)
    return result.stderr


def _reusable(folder: Path, record: dict) -> list[Path] | None:
    try:
        saved = json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or {key: saved.get(key) for key in record} != record:
        return None
    frames = [folder / f"{number:05d}.png" for number in range(1, int(saved.get("frames", 0)) + 1)]
    return frames if frames and all(frame.is_file() for frame in frames) else None


def _decode(path: Path, folder: Path, nth: int, first: int, last: int, field: str) -> list[Path]:
    """One ffmpeg pass writes the chosen frames into a hidden folder; each is then renamed into place."""
    staging = folder / ".extracting"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    chosen = f"select=gte(n\\,{first})*not(mod(n-{first}\\,{nth}))"
    limit = [] if last == -1 else ["-frames:v", str((last - first) // nth + 1)]
    output = ["-map", "0:v:0", "-vf", chosen, "-fps_mode", "passthrough", "-pix_fmt", "rgb24", *limit]
    try:
        _ffmpeg(path, field, *output, "-start_number", "1", str(staging / "%05d.png"))
        frames = []
        for made in sorted(staging.iterdir(), key=lambda made: int(made.stem)):
            frames.append(folder / made.name)
            os.replace(made, frames[-1])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return frames
