"""The Audio tab: the track, its band filters, and the envelopes its analysis finds."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, DataTable, Input, Label, Static

from engine.errors import DriftwaveError
from tui.panes.common import Edited, error_text
from tui.session import Session


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
