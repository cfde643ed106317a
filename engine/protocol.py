"""The engine's wire protocol: newline-delimited JSON over a Unix socket, shared by both ends.

Every message carries ``v`` (the protocol version) and ``type``. Requests: hello, submit (a
render, or with ``live`` a live session), update, control (live mode's quick controls), pause,
resume, cancel, status, shutdown. Events: state, progress, frame, live (one per live frame: rate,
latency, audio values, the newest frame's path), log, error, done. Frames travel as file paths,
never as pixels. No model library is imported here: the
TUI uses this module too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

VERSION = 2
REQUESTS = ("hello", "submit", "update", "control", "pause", "resume", "cancel", "status", "shutdown")
EVENTS = ("state", "progress", "frame", "live", "log", "error", "done")
MAX_LINE = 16 * 1024 * 1024  # a settings snapshot with long prompts fits easily


class ProtocolError(ValueError):
    """A line that is not a message of this protocol."""


def encode(kind: str, **fields: Any) -> bytes:
    return (json.dumps({"v": VERSION, "type": kind, **fields}, separators=(",", ":")) + "\n").encode()


def decode(line: bytes | str) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ProtocolError(f"not JSON: {error}") from None
    if not isinstance(message, dict) or "type" not in message or "v" not in message:
        raise ProtocolError("a message is an object with 'v' and 'type'")
    return message


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


def log_path() -> Path:
    return socket_path().with_name("engine.log")
