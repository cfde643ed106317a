"""The Motion tab: every schedule, edited and validated, with a plot of its curve."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.reactive import var
from textual.widgets import Input, Label, ListItem, ListView, Static

from engine.errors import DriftwaveError
from engine.settings import GROUPS
from tui.panes.common import Edited, error_text
from tui.session import SCHEDULE_FIELDS, Session


class MotionPane(Horizontal):
    variables: var[dict] = var(dict, always_update=True, init=False)
    """The track's envelopes (and its ``bpm``) the curves read, once the analysis is ready."""

    def __init__(self, session: Session, **kwargs) -> None:
        super().__init__(**kwargs)
        self.session = session
        self.current = "motion.zoom"

    def compose(self) -> ComposeResult:
        items = []
        for group in GROUPS:
            fields = [path for path in sorted(SCHEDULE_FIELDS, key=_field_order) if path.startswith(group + ".")]
            if fields:
                items.append(ListItem(Label(f"[b]{group}[/b]"), disabled=True, classes="group"))
                items += [ListItem(Label(path.split(".", 1)[1]), name=path) for path in fields]
        yield ListView(*items, id="schedule-list")
        with Vertical(id="schedule-editor"):
            yield Static(id="schedule-title")
            yield Input(id="schedule-input")
            yield Static(id="schedule-error", classes="error")
            from tui.plot import SchedulePlot  # plotext loads when this tab does, after the first paint

            yield SchedulePlot(id="schedule-plot")

    def on_mount(self) -> None:
        self.select(self.current)

    def watch_variables(self) -> None:
        self.replot()

    def select(self, path: str) -> None:
        """Highlight ``path`` in the list and edit it."""
        listing = self.query_one("#schedule-list", ListView)
        for index, item in enumerate(listing.children):
            if item.name == path:
                listing.index = index
        self._show(path)

    def edit(self, path: str) -> None:
        """Select ``path`` and put the cursor in its schedule."""
        self.select(path)
        self.query_one("#schedule-input", Input).focus()

    def edited_elsewhere(self, path: str) -> None:
        """Another tab changed ``path``: replot when it moves the curve."""
        if path != self.current and (path in SCHEDULE_FIELDS or path.startswith(("audio", "animation"))):
            self.replot()

    def _show(self, path: str) -> None:
        from tui.session import describe

        self.current = path
        self.query_one("#schedule-title", Static).update(f"[b]{path}[/b] — {describe(path)}")
        self.query_one("#schedule-input", Input).value = self.session.value(path)
        self.query_one("#schedule-error", Static).update("")
        self.replot()

    @on(ListView.Highlighted, "#schedule-list")
    def _highlighted(self, event: ListView.Highlighted) -> None:
        if event.item is not event.list_view.highlighted_child:
            return  # stale: the list moved on since
        if event.item is not None and event.item.name and event.item.name != self.current:
            self._show(event.item.name)  # no index change here: that would echo back

    @on(Input.Changed, "#schedule-input")
    def _edited(self, event: Input.Changed) -> None:
        if event.value == self.session.value(self.current):
            return
        try:
            self.session.set(self.current, event.value)
        except DriftwaveError as error:
            self.query_one("#schedule-error", Static).update(error_text(error))
            return
        self.query_one("#schedule-error", Static).update("")
        self.replot()
        self.post_message(Edited(self.current))

    def replot(self) -> None:
        """The curve over all frames, audio variables included when the analysis is ready."""
        from engine.plan import audio_names, timeline_of
        from engine.schedule import compile_schedule

        settings = self.session.settings
        timeline = timeline_of(settings, bpm=self.variables.get("bpm") or settings.audio.bpm or 120.0)
        names = audio_names(settings)
        variables = {name: self.variables.get(name, [0.0] * timeline.frames) for name in names}
        variables["bpm"] = float(self.variables.get("bpm") or 0.0)
        try:
            schedule = compile_schedule(
                self.session.value(self.current),
                timeline,
                names=names,
                blend=settings.animation.blend,
                field=self.current,
            )
            values = schedule.evaluate({k: _fit(v, timeline.frames) for k, v in variables.items()})
        except DriftwaveError as error:
            self.query_one("#schedule-error", Static).update(error_text(error))
            return
        keys = list(schedule.positions)
        self.query_one("#schedule-plot").show(values, keys, self.current.split(".", 1)[1])


def _fit(values, frames: int):
    import numpy as np

    if np.ndim(values) == 0:
        return values
    array = np.zeros(frames)
    array[: min(frames, len(values))] = np.asarray(values)[:frames]
    return array


def _field_order(path: str) -> int:
    group, name = path.split(".", 1)
    return list(GROUPS[group].model_fields).index(name)
