"""The tabs of the TUI: prompts, motion (schedules with plots), audio, render, settings.

Panes edit through the shared :class:`Session` (attributes down) and tell the app what changed
with an ``Edited`` message (messages up); none reaches into another pane.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import (
    Button,
    Collapsible,
    DataTable,
    Input,
    Label,
    ListItem,
    ListView,
    ProgressBar,
    RichLog,
    Select,
    Static,
    Switch,
    TextArea,
)

from engine.errors import DriftwaveError, ErrorGroup
from engine.settings import GROUPS, literal_choices
from tui.session import SCHEDULE_FIELDS, Session


class Edited(Message):
    """A setting changed (and validated)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path


def error_text(error: DriftwaveError) -> str:
    return str(error.errors[0] if isinstance(error, ErrorGroup) else error)


# -- prompts -------------------------------------------------------------------------------------


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


# -- motion (every schedule) ---------------------------------------------------------------------------


class MotionPane(Horizontal):
    def __init__(self, session: Session, **kwargs) -> None:
        super().__init__(**kwargs)
        self.session = session
        self.current = "motion.zoom"
        self.variables: dict = {}

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

    def select(self, path: str) -> None:
        """Highlight ``path`` in the list and edit it."""
        listing = self.query_one("#schedule-list", ListView)
        for index, item in enumerate(listing.children):
            if item.name == path:
                listing.index = index
        self._show(path)

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


# -- audio ----------------------------------------------------------------------------------------------


class AudioPane(Vertical):
    class Analysed(Message):
        """The track's envelopes are ready (for the plots of every pane)."""

        def __init__(self, values: dict) -> None:
            super().__init__()
            self.values = values

    def __init__(self, session: Session, **kwargs) -> None:
        super().__init__(**kwargs)
        self.session = session

    def compose(self) -> ComposeResult:
        audio = self.session.settings.audio
        with Horizontal(classes="row"):
            yield Label("Track")
            yield Input(audio.file, id="audio-file", placeholder="path of a wav, flac, ogg, mp3...")
            yield Label("Offset s")
            yield Input(f"{audio.offset:g}", id="audio-offset", classes="short")
        yield DataTable(id="filters", cursor_type="row")
        with Horizontal(classes="row"):
            yield Input(placeholder="name", id="filter-name", classes="short")
            yield Input(placeholder="centre Hz", id="filter-center", classes="short")
            yield Input(placeholder="width Hz", id="filter-width", classes="short")
            yield Input("5", placeholder="order", id="filter-order", classes="short")
            yield Button("Add / update", id="filter-save")
            yield Button("Remove", id="filter-remove")
        yield Static(id="audio-error", classes="error")
        from tui.plot import SchedulePlot

        yield SchedulePlot(id="audio-plot")

    def on_mount(self) -> None:
        table = self.query_one("#filters", DataTable)
        table.add_columns("name", "centre Hz", "width Hz", "order")
        self.refresh_filters()

    def refresh_filters(self) -> None:
        table = self.query_one("#filters", DataTable)
        table.clear()
        for spec in self.session.settings.audio.filters:
            table.add_row(spec.name, f"{spec.f_center:g}", f"{spec.f_width:g}", str(spec.order), key=spec.name)

    @on(DataTable.RowHighlighted, "#filters")
    def _pick(self, event: DataTable.RowHighlighted) -> None:
        spec = next((f for f in self.session.settings.audio.filters if f.name == event.row_key.value), None)
        if spec is not None:
            for field, value in (
                ("name", spec.name),
                ("center", spec.f_center),
                ("width", spec.f_width),
                ("order", spec.order),
            ):
                self.query_one(f"#filter-{field}", Input).value = f"{value:g}" if not isinstance(value, str) else value

    @on(Button.Pressed, "#filter-save")
    def _save_filter(self) -> None:
        entered = {
            field: self.query_one(f"#filter-{field}", Input).value.strip()
            for field in ("name", "center", "width", "order")
        }
        filters = [f.model_dump() for f in self.session.settings.audio.filters if f.name != entered["name"]]
        filters.append(
            {
                "name": entered["name"],
                "f_center": entered["center"] or 0,
                "f_width": entered["width"] or 0,
                "order": entered["order"] or 5,
            }
        )
        if self._set("audio.filters", filters):
            self.refresh_filters()

    @on(Button.Pressed, "#filter-remove")
    def _remove_filter(self) -> None:
        name = self.query_one("#filter-name", Input).value.strip()
        filters = [f.model_dump() for f in self.session.settings.audio.filters if f.name != name]
        if self._set("audio.filters", filters):
            self.refresh_filters()

    @on(Input.Submitted, "#audio-file")
    @on(Input.Submitted, "#audio-offset")
    def _track(self) -> None:
        file = self.query_one("#audio-file", Input).value.strip()
        if self._set("audio.file", file) and self._set("audio.offset", self.query_one("#audio-offset", Input).value):
            self.analyse()

    def _set(self, path: str, value: Any) -> bool:
        try:
            self.session.set(path, value)
        except DriftwaveError as error:
            self.query_one("#audio-error", Static).update(error_text(error))
            return False
        self.query_one("#audio-error", Static).update("")
        self.post_message(Edited(path))
        if path == "audio.filters":
            self.analyse()
        return True

    def analyse(self) -> None:
        settings = self.session.settings
        if not settings.audio.file:
            self.query_one("#audio-plot").show([0.0], [], "no track: envelopes read 0")
            return
        self.query_one("#audio-error", Static).update("analysing the track…")
        self.run_worker(
            lambda: self._analysis(settings), thread=True, exclusive=True, group="audio", exit_on_error=False
        )

    def _analysis(self, settings) -> None:
        from audio.envelopes import analyze_settings

        try:
            result = analyze_settings(settings, settings.animation.max_frames, settings.animation.fps)
        except DriftwaveError as error:
            self.app.call_from_thread(self._show_error, error_text(error))
            return
        values = dict(result.values) | {"bpm": result.bpm or 0.0}
        self.app.call_from_thread(self._show, values, result.beat_frames)

    def _show_error(self, text) -> None:
        if self.is_mounted:  # the worker's answer may come after the pane is gone
            self.query_one("#audio-error", Static).update(text)

    def _show(self, values: dict, beats: list[int]) -> None:
        if not self.is_mounted:
            return
        self.query_one("#audio-error", Static).update(f"tempo {values.get('bpm', 0):.1f} BPM, {len(beats)} beats")
        plot = self.query_one("#audio-plot")
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("envelopes (beats marked)")
        for name, series in values.items():
            if name != "bpm":
                plt.plot(list(range(len(series))), [float(v) for v in series], label=name, marker="braille")
        for beat in beats:
            plt.vline(beat, "orange")
        plot.refresh()
        self.post_message(self.Analysed(values))


# -- render -----------------------------------------------------------------------------------------------


class RenderPane(Vertical):
    """Render controls, progress, the log and the newest frame (shown on the pane's own timer, so
    nothing draws into it once it is gone)."""

    def __init__(self, image_class, preview_interval: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.image_class = image_class
        self.preview_interval = preview_interval
        self.lines: list[str] = []  # the log as plain text
        self.pending_frame: str | None = None  # the newest frame the engine wrote
        self.shown_frame: str | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(classes="buttons"):
            yield Button("Render", id="render-start", variant="primary")
            yield Button("Pause", id="render-pause")
            yield Button("Cancel", id="render-cancel", variant="error")
            yield Label("engine: connecting…", id="render-status")
        yield ProgressBar(id="render-progress", total=1, show_eta=False)
        yield Label("", id="render-rate")
        with Horizontal(id="render-body"):
            yield self.image_class(id="render-preview")
            yield RichLog(id="render-log", wrap=True, markup=False, max_lines=500, min_width=20)

    def on_mount(self) -> None:
        self.set_interval(self.preview_interval, self.show_pending_frame)

    def show_pending_frame(self) -> None:
        """The newest frame, if it is new: older ones that came between ticks are skipped."""
        pending = self.pending_frame
        if not pending or pending == self.shown_frame or not Path(pending).exists():
            return
        if self.show_frame(pending):
            self.shown_frame = pending

    def show_state(self, state: str, job: dict | None) -> None:
        folder, resumed = (job or {}).get("folder") or "", (job or {}).get("resume")
        text = f"engine: {state}" + (f" — {folder}" if folder else "")
        text += f" (resuming run {resumed})" if resumed else ""
        self.query_one("#render-status", Label).update(text)
        self.query_one("#render-pause", Button).label = "Resume" if state == "paused" else "Pause"

    def show_progress(self, frame: int, total: int, fps: float, eta: float | None) -> None:
        bar = self.query_one("#render-progress", ProgressBar)
        bar.update(total=total, progress=frame)
        eta_text = f"{int(eta or 0) // 60}:{int(eta or 0) % 60:02d}"
        self.query_one("#render-rate", Label).update(f"frame {frame}/{total}   {fps:.2f} it/s   ETA {eta_text}")

    def show_frame(self, path: str) -> bool:
        """Show a frame, scaled down first: the terminal has few cells and redraws often. False
        when the preview is not built yet (the next tick shows it)."""
        from PIL import Image

        previews = self.query("#render-preview")
        if not previews:
            return False
        try:
            with Image.open(path) as image:
                small = image.convert("RGB")
        except OSError:
            return False  # replaced while reading: the next tick shows it
        small.thumbnail((192, 192))
        previews.first().image = small
        return True

    def log(self, line: str) -> None:
        self.lines.append(line)
        self.query_one("#render-log", RichLog).write(line)


# -- settings (generated from the model) --------------------------------------------------------------------

PANE_FIELDS = {"prompting.negative_prompt", "audio.file", "audio.offset", "audio.filters"} | SCHEDULE_FIELDS


class SettingsGroup(Collapsible):
    """One group of settings; its fields are built the first time it opens (most never do, and
    building all ~250 at once would hold the screen still for a second)."""

    def __init__(self, session: Session, group: str, fields: list[str], *, collapsed: bool) -> None:
        super().__init__(title=group, collapsed=collapsed, id=f"group-{group}")
        self.session, self.group, self.fields = session, group, fields
        self.filled = False

    async def fill(self) -> None:
        if self.filled:
            return
        self.filled = True
        model = GROUPS[self.group]
        rows: list[Widget] = []
        for name in self.fields:
            path = f"{self.group}.{name}"
            widget = _field_widget(path, model.model_fields[name].annotation, self.session.value(path))
            rows += [
                Horizontal(Label(name, classes="field-name"), widget, classes="field"),
                Static(model.model_fields[name].description or "", classes="help"),
                Static(id=f"error-{self.group}-{name}", classes="error"),
            ]
        await self.query_one(Collapsible.Contents).mount_all(rows)


def _field_widget(path: str, annotation, value) -> Widget:
    widget_id = "field-" + path.replace(".", "-")
    choices = literal_choices(annotation)
    if annotation is bool:
        return Switch(value=value, id=widget_id)
    if choices:
        return Select([(str(c), c) for c in choices], value=value, allow_blank=False, id=widget_id)
    text = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return Input(text, id=widget_id)


class SettingsPane(VerticalScroll):
    """Every setting the other tabs do not edit, generated from the settings model."""

    def __init__(self, session: Session, **kwargs) -> None:
        super().__init__(**kwargs)
        self.session = session

    def compose(self) -> ComposeResult:
        for group, model in GROUPS.items():
            fields = [name for name in model.model_fields if f"{group}.{name}" not in PANE_FIELDS]
            if fields:
                yield SettingsGroup(self.session, group, fields, collapsed=group not in ("animation", "image"))

    async def on_mount(self) -> None:
        for group in self.query(SettingsGroup):
            if not group.collapsed:
                await group.fill()

    @on(Collapsible.Expanded)
    async def _opened(self, event: Collapsible.Expanded) -> None:
        if isinstance(event.collapsible, SettingsGroup):
            await event.collapsible.fill()

    @on(Switch.Changed)
    @on(Select.Changed)
    @on(Input.Changed)
    def _changed(self, event) -> None:
        widget = event.control if hasattr(event, "control") else event.input
        if not widget.id or not widget.id.startswith("field-"):
            return
        group, name = widget.id.removeprefix("field-").split("-", 1)
        path = f"{group}.{name}"
        value = _typed(GROUPS[group].model_fields[name].annotation, event.value)
        if value == self.session.value(path):
            return
        try:
            self.session.set(path, value)
        except DriftwaveError as error:
            self.query_one(f"#error-{group}-{name}", Static).update(error_text(error))
            return
        self.query_one(f"#error-{group}-{name}", Static).update("")
        self.post_message(Edited(path))

    async def focus_field(self, path: str) -> bool:
        """Open the field's group and put the cursor in it."""
        group_name, name = path.split(".", 1)
        groups = self.query(f"#group-{group_name}")
        if not groups:
            return False
        group = groups.first(SettingsGroup)
        group.collapsed = False
        await group.fill()
        widget = self.query_one(f"#field-{group_name}-{name}")
        self.call_after_refresh(lambda: (widget.focus(), self.scroll_to_widget(widget)))
        return True


def _typed(annotation, value):
    """Text from an Input as the field's type; the model's validation explains bad values."""
    if not isinstance(value, str) or annotation is str:
        return value
    import tomlkit

    try:
        return tomlkit.parse(f"value = {value}").unwrap()["value"]
    except Exception:  # not a TOML value: keep the text
        return value
