"""A run's folder: ``<outdir>/<batch_name>/<timestring>/`` with settings, frames, state, video.

Frames and state are written atomically (a hidden temporary file, flushed to disk, then renamed
into place), so a render killed at any moment or stopped by a full disk leaves only whole files
under their names. ``state.json`` (plus ``state/*.pt`` tensors) holds what the loop needs to
continue exactly where it stopped, so ``--resume`` reproduces the frames an uninterrupted run
makes.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from engine.errors import DriftwaveError, SettingsError

STATE_VERSION = 1


def new_timestring() -> str:
    return time.strftime("%Y%m%d%H%M%S")


class RunFolder:
    def __init__(self, root: Path, timestring: str, filename_format: str) -> None:
        self.root = root
        self.timestring = timestring
        self.filename_format = filename_format
        self.frames = root / "frames"
        self.state_dir = root / "state"

    @classmethod
    def create(cls, outdir: str, batch_name: str, filename_format: str, timestring: str | None = None) -> RunFolder:
        check_filename_format(filename_format)
        timestring = timestring or new_timestring()
        root = Path(outdir).expanduser() / batch_name / timestring
        while root.exists():  # two runs in one second: never write into another run
            timestring = str(int(timestring) + 1)
            root = root.with_name(timestring)
        create_folder(root / "frames")
        return cls(root, timestring, filename_format)

    @classmethod
    def find(cls, outdir: str, batch_name: str, timestring: str, filename_format: str) -> RunFolder:
        """The run to resume: one with a state, or one stopped before its first state was saved
        (it starts again from frame 0 with its saved settings). Temporary files left by a render
        that was killed while writing are removed."""
        root = Path(outdir).expanduser() / batch_name / timestring
        if not (root / "settings.toml").exists():
            runs = sorted(p.parent.name for p in root.parent.glob("*/settings.toml")) if root.parent.exists() else []
            hint = f"runs of {batch_name}: {', '.join(runs)}" if runs else f"no resumable runs under {root.parent}"
            raise DriftwaveError(f"there is no run {timestring} to resume in {root.parent}", hint=hint)
        run = cls(root, timestring, filename_format)
        run.remove_temporaries()
        return run

    def remove_temporaries(self) -> None:
        """Half-written files (``.NAME.part``, a video's ``.NAME.silent.mp4``) of a killed render."""
        for folder in (self.root, self.frames, self.state_dir):
            for path in folder.glob(".*") if folder.is_dir() else ():
                if path.is_file() and (".part" in path.name or ".silent." in path.name):
                    path.unlink(missing_ok=True)

    def frame_path(self, index: int, *, seed: int = 0, prompt: str = "") -> Path:
        name = self.filename_format.format(index=index, timestring=self.timestring, seed=seed, prompt=_safe(prompt))
        return self.frames / name

    def written_frames(self) -> list[Path]:
        return written_frames(self.root)

    def save_state(self, state: dict[str, Any], tensors: dict[str, torch.Tensor | None]) -> None:
        """Write the tensors, then state.json naming them: a crash in between keeps the old state,
        and so does a write that fails (the new tensors are removed again)."""
        names: dict[str, str] = {}
        try:
            self.state_dir.mkdir(exist_ok=True)
            for name, tensor in tensors.items():
                if tensor is None:
                    continue
                path = self.state_dir / f"{name}-{state['next_group']}.pt"
                buffer = io.BytesIO()
                torch.save(tensor.detach().cpu(), buffer)
                write_bytes_atomically(path, buffer.getvalue())
                names[name] = path.name
            document = {"version": STATE_VERSION, **state, "tensors": names}
            write_bytes_atomically(self.root / "state.json", json.dumps(document, indent=1).encode())
        except (DriftwaveError, OSError) as error:
            for written in names.values():
                (self.state_dir / written).unlink(missing_ok=True)
            raise _cannot_write(self.root / "state.json", error) from None
        for stale in self.state_dir.glob("*.pt"):
            if stale.name not in names.values():
                stale.unlink(missing_ok=True)

    def load_state(self, device: torch.device) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        state = json.loads((self.root / "state.json").read_text())
        if state.get("version") != STATE_VERSION:
            raise DriftwaveError(f"{self.root} was written by another version of Driftwave and cannot be resumed")
        tensors = {
            name: torch.load(self.state_dir / file, map_location=device, weights_only=True)
            for name, file in state.get("tensors", {}).items()
        }
        return state, tensors

    def save_history(self, history: list[tuple[int, Any]]) -> None:
        """Live edits as (first frame, settings) pairs, so a resume applies them at the same frames."""
        lines = [
            json.dumps({"from_frame": frame, "settings": settings.model_dump(mode="json")})
            for frame, settings in history
        ]
        write_bytes_atomically(self.root / "settings_history.jsonl", "".join(line + "\n" for line in lines).encode())

    def load_history(self) -> list[tuple[int, Any]]:
        from engine.presets import settings_from_data

        path = self.root / "settings_history.jsonl"
        if not path.exists():
            return []
        entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [(entry["from_frame"], settings_from_data(entry["settings"])) for entry in entries]


def create_folder(folder: Path) -> None:
    """``folder`` (and those above it), new and writable, or an error naming ``batch.outdir``."""
    try:
        folder.mkdir(parents=True)
        probe = folder / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as error:
        raise DriftwaveError(
            f"cannot write to {folder}: {error.strerror or error}",
            field="batch.outdir",
            hint="set batch.outdir to a folder you can write to",
        ) from None


def written_frames(run: Path) -> list[Path]:
    """The whole frames of the run folder ``run``, in order (none when it has no frames yet)."""
    frames = run / "frames"
    if not frames.is_dir():
        return []
    return sorted(p for p in frames.iterdir() if p.is_file() and not p.name.startswith("."))


def write_bytes_atomically(path: Path, data: bytes) -> Path:
    """``data`` as ``path``: a hidden temporary file, flushed to disk, renamed into place. When the
    write fails (a full disk, a file size limit) the temporary file is removed and the old
    ``path``, if any, stays as it was; the error says which file and why."""
    temporary = path.with_name(f".{path.name}.part")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise _cannot_write(path, error) from None
    return path


def _cannot_write(path: Path, error: Exception) -> DriftwaveError:
    if isinstance(error, DriftwaveError):
        return error
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return DriftwaveError(
        f"cannot write {path}: {reason}",
        hint="free some disk space (or choose another outdir); the finished frames and the last saved state are kept",
    )


def check_filename_format(filename_format: str) -> None:
    try:
        name = filename_format.format(index=1, timestring="20260101000000", seed=1, prompt="a")
    except (KeyError, IndexError, ValueError) as error:
        raise SettingsError(
            f"filename_format {filename_format!r} cannot be filled in ({error})",
            field="batch.filename_format",
            hint="use the placeholders {index}, {timestring}, {seed} and {prompt}, e.g. {index:06d}.png",
        ) from None
    if "/" in name or not Path(name).suffix:
        raise SettingsError(
            f"filename_format {filename_format!r} must name a file with an extension",
            field="batch.filename_format",
            hint="e.g. {index:06d}.png",
        )
    if "{index" not in filename_format:
        raise SettingsError(
            "filename_format needs {index} so frames do not overwrite each other",
            field="batch.filename_format",
            hint="e.g. {index:06d}.png",
        )


def _safe(text: str) -> str:
    return re.sub(r"[^\w\-]+", "_", text)[:80].strip("_")


@contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Let Ctrl-C wait until the block (writing a frame and the state) is done."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: received.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            raise KeyboardInterrupt
