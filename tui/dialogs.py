"""The TUI's modal questions: a choice of buttons, one line of text, and the questions the app asks."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label


class Choice(ModalScreen[str]):
    """A question with buttons; dismisses with the chosen button's id."""

    def __init__(self, question: str, choices: list[tuple[str, str]]) -> None:
        super().__init__()
        self.question, self.choices = question, choices

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question)
            with Horizontal(classes="buttons"):
                for choice_id, label in self.choices:
                    yield Button(label, id=choice_id)

    @on(Button.Pressed)
    def _chosen(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id)


class Ask(ModalScreen[str | None]):
    """One line of text (a path), or None when cancelled with Escape."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cancel-input")]

    def __init__(self, question: str, value: str = "") -> None:
        super().__init__()
        self.question, self.value = question, value

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question)
            yield Input(self.value, id="ask-input")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


def discard_changes(title: str) -> Choice:
    """Asked before unsaved edits (of the preset titled ``title``) are dropped."""
    return Choice(f"Discard the unsaved changes to {title.rstrip(' *')}?", [("discard", "Discard"), ("stay", "Cancel")])


def save_changes(title: str) -> Choice:
    """Asked on quitting with unsaved edits."""
    return Choice(
        f"Save the changes to {title.rstrip(' *')}?", [("save", "Save"), ("discard", "Discard"), ("stay", "Cancel")]
    )


def keep_rendering() -> Choice:
    """Asked on quitting while a render runs."""
    return Choice(
        "A render is running. Keep it going after the TUI closes?",
        [("keep", "Keep rendering"), ("stop", "Stop it"), ("stay", "Cancel")],
    )
