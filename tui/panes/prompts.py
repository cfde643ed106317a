"""The Prompts tab: the keyed prompts, each edited and validated, and the negative prompt."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, ListItem, ListView, Static, TextArea

from engine.errors import DriftwaveError
from tui.panes.common import Edited, error_text
from tui.session import Session


class PromptsPane(Vertical):
    def __init__(self, session: Session, **kwargs) -> None:
        super().__init__(**kwargs)
        self.session = session
        self.current: str | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="prompt-body"):
            with Vertical(id="prompt-side"):
                yield ListView(id="prompt-keys")
                with Horizontal(classes="buttons"):
                    yield Button("Add", id="add-prompt")
                    yield Button("Remove", id="remove-prompt")
            with Vertical(id="prompt-editor"):
                yield Label("Frame (30, 2.5s, 8b)")
                yield Input(id="prompt-key")
                yield Label("Prompt  (text --neg negative | sub:weight | (emphasis:1.3) | `expression`)")
                yield TextArea(id="prompt-text", soft_wrap=True, show_line_numbers=False)
                yield Static(id="prompt-error", classes="error")
        yield Label("Negative prompt, added to every frame")
        yield Input(self.session.settings.prompting.negative_prompt, id="negative-prompt")

    def on_mount(self) -> None:
        self.refresh_keys()

    def refresh_keys(self, select: str | None = None) -> None:
        keys = self.query_one("#prompt-keys", ListView)
        prompts = self.session.settings.prompts
        ordered = sorted(prompts, key=_key_order)
        keys.clear()
        for key in ordered:
            text = prompts[key].replace("\n", " ")
            keys.append(ListItem(Label(f"{key:>6}  {text[:48]}"), name=key))
        target = select or self.current or (ordered[0] if ordered else None)
        if target in ordered:
            keys.index = ordered.index(target)
            self._load(target)

    def _load(self, key: str) -> None:
        self.current = key
        self.query_one("#prompt-key", Input).value = key
        area = self.query_one("#prompt-text", TextArea)
        if area.text != self.session.settings.prompts.get(key, ""):
            area.load_text(self.session.settings.prompts.get(key, ""))
        self.query_one("#prompt-error", Static).update("")

    @on(ListView.Highlighted, "#prompt-keys")
    def _highlighted(self, event: ListView.Highlighted) -> None:
        stale = event.item is not event.list_view.highlighted_child  # the list moved on since
        if event.item is not None and not stale and event.item.name != self.current:
            self._load(event.item.name)

    @on(TextArea.Changed, "#prompt-text")
    @on(Input.Changed, "#prompt-key")
    def _edited(self) -> None:
        if self.current is None:
            return
        key = self.query_one("#prompt-key", Input).value.strip()
        text = self.query_one("#prompt-text", TextArea).text
        prompts = dict(self.session.settings.prompts)
        if key != self.current and key in prompts:
            self.query_one("#prompt-error", Static).update(f"prompts: frame {key} already has a prompt")
            return
        prompts.pop(self.current, None)
        prompts[key or self.current] = text
        if self._apply(prompts):
            renamed = key and key != self.current
            self.current = key or self.current
            if renamed:
                self.refresh_keys(self.current)
            else:
                self._relabel()

    def _relabel(self) -> None:
        keys = self.query_one("#prompt-keys", ListView)
        if keys.highlighted_child is not None:
            text = self.session.settings.prompts[self.current].replace("\n", " ")
            keys.highlighted_child.query_one(Label).update(f"{self.current:>6}  {text[:48]}")

    def _apply(self, prompts: dict[str, str]) -> bool:
        if prompts == self.session.settings.prompts:  # the editor echoing a load: nothing to tell
            self.query_one("#prompt-error", Static).update("")
            return True
        try:
            self.session.set("prompts", prompts)
        except DriftwaveError as error:
            self.query_one("#prompt-error", Static).update(error_text(error))
            return False
        self.query_one("#prompt-error", Static).update("")
        self.post_message(Edited("prompts"))
        return True

    @on(Button.Pressed, "#add-prompt")
    def _add(self) -> None:
        prompts = dict(self.session.settings.prompts)
        last = max((_key_order(k) for k in prompts), default=-30)
        key = str(int(last) + 30 if last >= 0 else 0)
        prompts[key] = prompts.get(self.current or "", "") or "a new scene"
        if self._apply(prompts):
            self.refresh_keys(key)

    @on(Button.Pressed, "#remove-prompt")
    def _remove(self) -> None:
        prompts = dict(self.session.settings.prompts)
        if self.current is None or len(prompts) <= 1:
            self.app.notify("a run needs at least one prompt", severity="warning")
            return
        prompts.pop(self.current)
        self.current = None
        if self._apply(prompts):
            self.refresh_keys()

    @on(Input.Changed, "#negative-prompt")
    def _negative(self, event: Input.Changed) -> None:
        if event.value == self.session.settings.prompting.negative_prompt:
            return
        try:
            self.session.set("prompting.negative_prompt", event.value)
        except DriftwaveError as error:
            self.query_one("#prompt-error", Static).update(error_text(error))
            return
        self.post_message(Edited("prompting.negative_prompt"))


def _key_order(key: str) -> float:
    try:
        return float(key)
    except ValueError:
        return float("inf")
