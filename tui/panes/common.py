"""What every pane shares: the ``Edited`` message it posts up, a problem as one line, and the
editor of one setting's value."""

from __future__ import annotations

import json

from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input, Select, Switch

from engine.errors import DriftwaveError, ErrorGroup
from engine.settings import literal_choices


class Edited(Message):
    """A setting changed (and validated)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path


def error_text(error: DriftwaveError) -> str:
    return str(error.errors[0] if isinstance(error, ErrorGroup) else error)


def field_widget(annotation, value, widget_id: str) -> Widget:
    """The editor of a value of type ``annotation``: a switch, a choice, or text."""
    choices = literal_choices(annotation)
    if annotation is bool:
        return Switch(value=value, id=widget_id)
    if choices:
        return Select([(str(c), c) for c in choices], value=value, allow_blank=False, id=widget_id)
    text = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return Input(text, id=widget_id)


def typed_value(annotation, value):
    """Text from an Input as the field's type, read as ``--set`` reads it; the model's validation
    explains bad values."""
    if not isinstance(value, str):
        return value
    from engine.presets import override_value

    return override_value(annotation, value)


def apply_edit(widget: Widget, session, path: str, annotation, value, error) -> None:
    """An editor's new ``value`` for ``path`` into ``session``: a problem shown in the ``error``
    Static, a change announced by ``widget`` (``Edited``); the same value does nothing."""
    value = typed_value(annotation, value)
    if value == session.value(path):
        return
    try:
        session.set(path, value)
    except DriftwaveError as problem:
        error.update(error_text(problem))
        return
    error.update("")
    widget.post_message(Edited(path))
