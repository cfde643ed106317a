"""User-facing errors and notices: every problem names the field, the place and the fix."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar


class DriftwaveError(Exception):
    """A problem the user can fix.

    ``field`` is the settings path (``motion.zoom``), ``source`` the text being read,
    ``offset`` the character index in ``source`` where the problem is, ``keyframe`` the
    keyframe (as written) that holds it and ``hint`` what to write instead.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        source: str | None = None,
        offset: int | None = None,
        keyframe: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.source = source
        self.offset = offset
        self.keyframe = keyframe
        self.hint = hint

    def located(self, *, field: str | None = None) -> DriftwaveError:
        """Return this error with ``field`` filled in when the raiser did not know it."""
        if field and not self.field:
            self.field = field
        return self

    @property
    def line_and_column(self) -> tuple[int, int] | None:
        """1-based line and column of ``offset`` in ``source``."""
        if self.source is None or self.offset is None:
            return None
        before = self.source[: self.offset]
        line = before.count("\n") + 1
        column = self.offset - (before.rfind("\n") + 1) + 1
        return line, column

    def __str__(self) -> str:
        where = []
        if self.field:
            where.append(self.field)
        if self.keyframe is not None:
            where.append(f"keyframe {self.keyframe}")
        position = self.line_and_column
        if position:
            line, column = position
            multiline = self.source is not None and "\n" in self.source
            where.append(f"line {line}, column {column}" if multiline else f"column {column}")
        text = f"{', '.join(where)}: {self.message}" if where else self.message
        if position and self.source is not None:
            line, column = position
            shown = self.source.splitlines()[line - 1] if self.source.strip() else self.source
            text += f"\n    {shown}\n    {' ' * (column - 1)}^"
        if self.hint:
            text += f"\n  {self.hint}"
        return text


class SettingsError(DriftwaveError):
    """A setting that is unknown, of the wrong type or out of range."""


class ScheduleError(DriftwaveError):
    """A schedule string that cannot be compiled or evaluated."""


class PromptError(DriftwaveError):
    """A prompt, prompt key or prompt weight that cannot be read."""


class ErrorGroup(DriftwaveError):
    """Several independent problems found in one pass, reported together."""

    def __init__(self, errors: list[DriftwaveError]) -> None:
        super().__init__(f"{len(errors)} problems")
        self.errors = errors

    def __str__(self) -> str:
        return "\n".join(str(error) for error in self.errors)


class Notice(UserWarning):
    """Something the user should know that does not stop the run (rounded sizes, NaNs held)."""


_collector: ContextVar[list[str] | None] = ContextVar("driftwave_notices", default=None)


def notify(message: str) -> None:
    """Report a notice to the innermost :func:`collecting_notices`, else as a warning."""
    sink = _collector.get()
    if sink is None:
        warnings.warn(message, Notice, stacklevel=2)
    elif message not in sink:
        sink.append(message)


@contextmanager
def collecting_notices() -> Iterator[list[str]]:
    """Collect the notices raised inside the block (per thread/task, unlike warnings)."""
    sink: list[str] = []
    token = _collector.set(sink)
    try:
        yield sink
    finally:
        _collector.reset(token)
