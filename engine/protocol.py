"""The engine's wire protocol: newline-delimited JSON over a Unix socket, shared by both ends.

Every message carries ``v`` (the protocol version) and ``type``. Requests: hello, submit (a
render, or with ``live`` a live session), update, control (live mode's quick controls), pause,
resume, cancel, status, shutdown. Events are the dataclasses below, made by the render and the
live loop, sent by the server and read back by the CLI and the TUI with :func:`read_event`:
nothing parses a log line. Frames travel as file paths, never as pixels. No model library is
imported here: the TUI uses this module too.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

VERSION = 4
REQUESTS = ("hello", "submit", "update", "control", "pause", "resume", "cancel", "status", "shutdown")
MAX_LINE = 16 * 1024 * 1024  # a settings snapshot with long prompts fits easily


class ProtocolError(ValueError):
    """A line that is not a message of this protocol."""


def encode(kind: str, /, **fields: Any) -> bytes:
    return (json.dumps({"v": VERSION, "type": kind, **fields}, separators=(",", ":")) + "\n").encode()


def decode(line: bytes | str) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ProtocolError(f"not JSON: {error}") from None
    if not isinstance(message, dict) or "type" not in message or "v" not in message:
        raise ProtocolError("a message is an object with 'v' and 'type'")
    return message


# -- events -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunStarted:
    """A render began (or resumed) in ``folder``, run ``timestring``, on ``backend``."""

    TYPE: ClassVar[str] = "run"
    folder: str
    timestring: str
    backend: str


@dataclass(frozen=True)
class Progress:
    """``frame`` of ``total`` frames written (``total`` None: live, no end)."""

    TYPE: ClassVar[str] = "progress"
    frame: int
    total: int | None
    fps: float
    eta_s: float | None


@dataclass(frozen=True)
class FrameWritten:
    TYPE: ClassVar[str] = "frame"
    index: int
    path: str


@dataclass(frozen=True)
class Log:
    TYPE: ClassVar[str] = "log"
    message: str


@dataclass(frozen=True)
class Failed:
    """The job stopped on a problem: ``where`` it was raised, the settings ``field`` to change."""

    TYPE: ClassVar[str] = "error"
    message: str
    where: str = "engine"
    hint: str | None = None
    field: str | None = None
    traceback: str | None = None  # a bug's, for the engine log


@dataclass(frozen=True)
class Done:
    TYPE: ClassVar[str] = "done"
    outputs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LiveFrame:
    """One live frame: its rate, audio-to-picture latency, the audio values it read."""

    TYPE: ClassVar[str] = "live"
    frame: int
    fps: float
    latency_ms: float
    audio: dict[str, float]
    behind: bool
    problem: str | None
    path: str
    shown_latency_ms: float | None = None  # audio capture to picture shown, as the browser page measured it
    page: str | None = None  # the browser page's address (with its token) when serving


@dataclass(frozen=True)
class State:
    """The engine's snapshot: its state, the job (its settings, folder, outputs), the newest
    progress and frame, the recent log."""

    TYPE: ClassVar[str] = "state"
    state: str
    job: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None
    latest_frame: str | None = None
    log: list[str] = field(default_factory=list)
    pid: int | None = None


@dataclass(frozen=True)
class BatchStarted:
    """A sweep or a queue (``kind``) began or resumed in ``folder``: its variants, by name."""

    TYPE: ClassVar[str] = "batch"
    folder: str
    timestring: str
    kind: str
    variants: list[str]


@dataclass(frozen=True)
class VariantUpdate:
    """One variant of a batch: pending, running, done, failed or interrupted; ``frame`` of
    ``total`` written, over ``attempts`` tries (a lost worker's variant is tried again)."""

    TYPE: ClassVar[str] = "variant"
    name: str
    status: str
    frame: int
    total: int
    seconds: float
    attempts: int
    folder: str
    error: str | None = None


@dataclass(frozen=True)
class BatchProgress:
    """The whole batch: variants finished (done or failed) of all, frames written of all."""

    TYPE: ClassVar[str] = "batch_progress"
    finished: int
    variants: int
    frames: int
    total: int
    fps: float
    eta_s: float | None


Event = (
    RunStarted
    | Progress
    | FrameWritten
    | Log
    | Failed
    | Done
    | LiveFrame
    | State
    | BatchStarted
    | VariantUpdate
    | BatchProgress
)
_EVENTS: dict[str, type] = {kind.TYPE: kind for kind in typing.get_args(Event)}
EVENTS = tuple(_EVENTS)


def to_wire(event: Event) -> bytes:
    return encode(event.TYPE, **dataclasses.asdict(event))


def read_event(message: dict[str, Any]) -> Event | None:
    """The event a decoded message holds (None: not an event); a field missing: ProtocolError."""
    kind = _EVENTS.get(message.get("type"))
    if kind is None:
        return None
    names = {item.name for item in dataclasses.fields(kind)}
    try:
        return kind(**{name: value for name, value in message.items() if name in names})
    except TypeError as error:
        raise ProtocolError(f"a {message['type']!r} event: {error}") from None


def version_problem(message: dict[str, Any], *, side: str) -> str | None:
    """When versions differ, a sentence saying which side to update (``side``: who speaks)."""
    other = message.get("v")
    if other == VERSION:
        return None
    that = "TUI" if side == "engine" else "engine"
    older = that if not isinstance(other, int) or other < VERSION else side
    return f"protocol mismatch: the {side} speaks v{VERSION}, the {that} v{other}; update the {older}"


def runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/driftwave`` (per user, tmpfs), else under the user's cache dir."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and Path(base).is_dir():
        return Path(base) / "driftwave"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "driftwave" / "run"


def socket_path() -> Path:
    override = os.environ.get("DRIFTWAVE_SOCKET")
    return Path(override) if override else runtime_dir() / "engine.sock"


def log_path(socket: Path) -> Path:
    """Where the engine listening on ``socket`` writes its log."""
    return socket.with_name("engine.log")
