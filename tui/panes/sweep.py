"""The Sweep tab: what to vary, and each variant's progress as the engine runs the sweep.

The engine runs the sweep as a job, so it goes on when the terminal goes; a TUI attaching later
is shown every variant from the engine's snapshot.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import var
from textual.widgets import Button, DataTable, Input, Label, ProgressBar, Switch

from engine.errors import DriftwaveError
from engine.protocol import BatchProgress, VariantUpdate
from engine.variants import parse_vary
from tui.events import BatchEvent, BatchProgressEvent, StateEvent, VariantEvent

COLUMNS = ("variant", "status", "frames", "tries", "seconds", "error")


def split_varies(text: str) -> list[str]:
    """``seed=1..4; strength=0.4,0.6`` -> one ``--vary`` per ``;``-separated part."""
    return [part.strip() for part in text.split(";") if part.strip()]


class SweepPane(Vertical):
    """The vary line, the zip switch, the workers, Sweep / Resume / Cancel; the aggregate bar and
    a table with a row per variant."""

    class Start(Message):
        """Run a sweep of the session's settings: ``vary`` (one ``KEY=V1,V2`` each), ``paired``,
        ``workers`` (None: as many as the host has CPUs), ``resume`` (a stopped sweep's timestring)."""

        def __init__(self, vary: list[str], paired: bool, workers: int | None, resume: str | None) -> None:
            super().__init__()
            self.vary, self.paired, self.workers, self.resume = vary, paired, workers, resume

    class Stop(Message):
        """Cancel the running sweep: each variant stops after its frame."""

    variants: var[dict[str, VariantUpdate]] = var(dict, init=False)
    """Each variant's newest update, by name."""
    progress: var[BatchProgress | None] = var(None, init=False)
    stopped: var[str | None] = var(None, init=False)
    """The timestring of the last sweep when it stopped before all its variants were done."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.timestring: str | None = None
        self.started_with: tuple[str, bool] | None = None  # the vary text and zip of the sweep shown

    def compose(self) -> ComposeResult:
        with Horizontal(classes="buttons"):
            yield Input(placeholder="what to vary: seed=1..4; strength=0.4,0.6", id="sweep-vary")
            yield Label("zip", classes="sweep-label")
            yield Switch(id="sweep-zip")
            yield Input(placeholder="workers", id="sweep-workers", type="integer")
        with Horizontal(classes="buttons"):
            yield Button("Sweep", id="sweep-start", variant="primary")
            yield Button("Resume", id="sweep-resume", disabled=True)
            yield Button("Cancel", id="sweep-cancel", variant="error")
            yield Label("", id="sweep-status")
        yield ProgressBar(id="sweep-progress", total=1, show_eta=False)
        yield DataTable(id="sweep-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*COLUMNS)

    # -- what to vary ------------------------------------------------------------------------------

    @on(Button.Pressed, "#sweep-start")
    def _start(self) -> None:
        self._ask(resume=None)

    @on(Button.Pressed, "#sweep-resume")
    def _resume(self) -> None:
        self._ask(resume=self.stopped)

    @on(Button.Pressed, "#sweep-cancel")
    def _cancel(self) -> None:
        self.post_message(self.Stop())

    def _ask(self, resume: str | None) -> None:
        text = self.query_one("#sweep-vary", Input).value
        varies = split_varies(text)
        try:
            if not varies:
                raise DriftwaveError("say what to vary", hint="e.g. seed=1..4; strength=0.4,0.6")
            for vary in varies:
                parse_vary(vary)
        except DriftwaveError as error:
            self.query_one("#sweep-status", Label).update(f"vary: {error}")
            return
        workers = self.query_one("#sweep-workers", Input).value.strip()
        paired = self.query_one("#sweep-zip", Switch).value
        self.started_with = (text, paired)
        self.post_message(self.Start(varies, paired, int(workers) if workers else None, resume))

    # -- the engine's events ------------------------------------------------------------------------

    @on(BatchEvent)
    def _batch(self, message: BatchEvent) -> None:
        started = message.event
        self.timestring, self.stopped, self.progress = started.timestring, None, None
        self.variants = {}
        self.query_one(DataTable).clear()
        self.query_one("#sweep-status", Label).update(f"{len(started.variants)} variants in {started.folder}")

    @on(VariantEvent)
    def _variant(self, message: VariantEvent) -> None:
        self.variants = {**self.variants, message.event.name: message.event}

    @on(BatchProgressEvent)
    def _progressed(self, message: BatchProgressEvent) -> None:
        self.progress = message.event

    @on(StateEvent)
    def _state(self, message: StateEvent) -> None:
        """Attached to an engine: its sweep's variants; a sweep's end: whether it can go on."""
        snapshot = message.event
        job = snapshot.job or {}
        if "sweep" not in job:
            return
        if job.get("variants"):
            self.timestring = job.get("timestring") or self.timestring
            self.variants = {name: VariantUpdate(**fields) for name, fields in job["variants"].items()}
        if snapshot.state in ("cancelled", "error") and self.timestring:
            unfinished = any(update.status != "done" for update in self.variants.values())
            self.stopped = self.timestring if unfinished else None
        elif snapshot.state == "done":
            self.query_one("#sweep-status", Label).update(f"done: {len(self.variants)} variants")

    def watch_variants(self, variants: dict[str, VariantUpdate]) -> None:
        table = self.query_one(DataTable)
        for name, update in variants.items():
            cells = (
                name,
                update.status,
                f"{update.frame}/{update.total}" if update.total else str(update.frame),
                str(update.attempts),
                f"{update.seconds:.1f}",
                (update.error or "").splitlines()[0] if update.error else "",
            )
            if name in table.rows:
                for column, value in zip(table.columns, cells, strict=True):
                    table.update_cell(name, column, value)
            else:
                table.add_row(*cells, key=name)

    def watch_progress(self, progress: BatchProgress | None) -> None:
        if progress is None or not progress.total:
            return
        self.query_one("#sweep-progress", ProgressBar).update(total=progress.total, progress=progress.frames)
        eta = int(progress.eta_s or 0)
        self.query_one("#sweep-status", Label).update(
            f"variants {progress.finished}/{progress.variants}   frames {progress.frames}/{progress.total}"
            f"   ETA {eta // 60}:{eta % 60:02d}"
        )

    def watch_stopped(self, stopped: str | None) -> None:
        self.query_one("#sweep-resume", Button).disabled = stopped is None
        if stopped:
            self.query_one("#sweep-status", Label).update(f"stopped: Resume goes on with sweep {stopped}")
