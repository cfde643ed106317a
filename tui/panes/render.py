"""The Render tab: render controls, progress, the log and the newest frame, from the engine's events."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.reactive import var
from textual.timer import Timer
from textual.widgets import Button, Label, ProgressBar, RichLog

from engine.protocol import Progress
from tui.events import DoneEvent, FailedEvent, FrameEvent, LiveEvent, LogEvent, ProgressEvent, RunEvent, StateEvent

PROGRESS_INTERVAL = 0.1  # a fast render reports hundreds of frames a second: redrawn at most this often


class RenderPane(Vertical):
    """The engine's events as they come. The progress and the newest frame are drawn on the pane's
    own timers, so nothing draws into the pane once it is gone, nor for every frame, nor while
    another tab is in view (a redraw lays out the whole screen)."""

    pending_frame: var[str | None] = var(None, init=False)
    """The newest frame the engine wrote (shown at most every ``preview_interval``)."""
    progress: var[Progress | None] = var(None, init=False)
    """The newest progress of a render with an end."""

    def __init__(self, image_class, preview_interval: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.image_class = image_class
        self.preview_interval = preview_interval
        self.lines: list[str] = []  # the log as plain text
        self.shown_frame: str | None = None
        self.connected = False  # a state came since the engine went (or since the start)
        self._preview: Timer | None = None
        self._rate: Timer | None = None

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
        self._preview = self.set_interval(self.preview_interval, self._frame_tick, pause=True)
        self._rate = self.set_interval(PROGRESS_INTERVAL, self._progress_tick, pause=True)

    def on_show(self) -> None:
        """In view again: what came meanwhile is drawn on the next ticks."""
        self._preview.resume()
        self._rate.resume()

    def watch_pending_frame(self) -> None:
        if self._preview is not None:
            self._preview.resume()  # it ticks (now, or once the interval is over), then pauses

    def watch_progress(self) -> None:
        if self._rate is not None:
            self._rate.resume()

    def _frame_tick(self) -> None:
        """The newest frame, if it is new: older ones that came between ticks are skipped."""
        pending = self.pending_frame
        if not pending or pending == self.shown_frame or not self.is_on_screen:
            self._preview.pause()
        elif Path(pending).exists() and self._show_frame(pending):
            self.shown_frame = pending
            self._preview.pause()

    def _show_frame(self, path: str) -> bool:
        """Show a frame, scaled down first: the terminal has few cells and redraws often. False
        when it cannot be read now (the next tick tries again)."""
        from PIL import Image

        try:
            with Image.open(path) as image:
                small = image.convert("RGB")
        except OSError:
            return False  # replaced while reading
        small.thumbnail((192, 192))
        self.query_one("#render-preview").image = small
        return True

    def show_state(self, state: str, job: dict | None) -> None:
        folder, resumed = (job or {}).get("folder") or "", (job or {}).get("resume")
        text = f"engine: {state}" + (f" — {folder}" if folder else "")
        text += f" (resuming run {resumed})" if resumed else ""
        self.query_one("#render-status", Label).update(text)
        self.query_one("#render-pause", Button).label = "Resume" if state == "paused" else "Pause"

    def show_gone(self, resumable: str | None) -> None:
        """The engine went; ``resumable``: the run it was rendering, which Render resumes."""
        self.connected = False
        status = "disconnected — press Render to start a new engine"
        if resumable:
            status = f"stopped while rendering run {resumable}; your edits are kept — press Render to resume it"
        self.show_state(status, None)

    def show_resuming(self, timestring: str, frame: int | None, edited: bool) -> None:
        start = f"from frame {frame}" if frame is not None else "from its last complete frame"
        self.show_state(f"resuming run {timestring} {start}", None)
        self.log(
            f"resuming run {timestring} {start} with the settings saved in the run"
            + ("; your edits follow as a live edit once it runs" if edited else "")
        )

    def _progress_tick(self) -> None:
        self._rate.pause()
        if self.is_on_screen:
            self._draw_progress()

    def _draw_progress(self) -> None:
        if (progress := self.progress) is None:
            return
        self.query_one("#render-progress", ProgressBar).update(total=progress.total, progress=progress.frame)
        eta, fps = int(progress.eta_s or 0), progress.fps or 0.0
        rate = f"frame {progress.frame}/{progress.total}   {fps:.2f} it/s   ETA {eta // 60}:{eta % 60:02d}"
        self.query_one("#render-rate", Label).update(rate)

    def log(self, line: str) -> None:
        self.lines.append(line)
        self.query_one("#render-log", RichLog).write(line)

    # -- the engine's events ---------------------------------------------------------------------------

    @on(StateEvent)
    def _state(self, message: StateEvent) -> None:
        snapshot = message.event
        first, self.connected = not self.connected, True
        self.show_state(snapshot.state, snapshot.job)
        progress = snapshot.progress or {}
        if progress.get("total"):
            self.progress = Progress(progress["frame"], progress["total"], progress.get("fps"), progress.get("eta_s"))
            self._draw_progress()  # a running job's progress now, not a tick later
        if snapshot.latest_frame:
            self.pending_frame = snapshot.latest_frame
        if first:  # the engine's recent log, once per connection
            for line in snapshot.log:
                self.log(line)

    @on(ProgressEvent)
    def _progressed(self, message: ProgressEvent) -> None:
        if message.event.total:
            self.progress = message.event

    @on(FrameEvent)
    @on(LiveEvent)  # a TUI opened for editing, attached to a live session
    def _frame(self, message: FrameEvent | LiveEvent) -> None:
        self.pending_frame = message.event.path

    @on(RunEvent)
    def _run(self, message: RunEvent) -> None:
        self.log(f"rendering to {message.event.folder} with {message.event.backend}")

    @on(LogEvent)
    def _log(self, message: LogEvent) -> None:
        self.log(message.event.message)

    @on(DoneEvent)
    def _done(self, message: DoneEvent) -> None:
        self.log(f"done: {len(message.event.outputs)} files")

    @on(FailedEvent)
    def _failed(self, message: FailedEvent) -> None:
        failure = message.event
        hint = failure.hint or ""
        if (failure.field or "").startswith("model."):  # the CLI's hint names --set; here it is the Settings tab
            hint = "to see the motion without a model, set model.backend to preview (Settings)"
        self.log(f"error ({failure.where}): {failure.message}" + (f" — {hint}" if hint else ""))
        self.notify(
            f"{failure.where}: {failure.message}\n{hint}".strip(), title="Engine error", severity="error", timeout=12
        )
