"""What every pane shares: the ``Edited`` message it posts up, and a problem as one line."""

from __future__ import annotations

from textual.message import Message

from engine.errors import DriftwaveError, ErrorGroup


class Edited(Message):
    """A setting changed (and validated)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path


def error_text(error: DriftwaveError) -> str:
    return str(error.errors[0] if isinstance(error, ErrorGroup) else error)
