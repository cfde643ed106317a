"""The Driftwave TUI: edit a preset while the engine process renders it, never importing torch."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.reactive import var
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane

from engine import protocol
from engine.errors import DriftwaveError
from engine.serve import DEFAULT_PORT
from tui.client import EngineClient
from tui.commands import DriftwaveCommands
from tui.dialogs import Ask, discard_changes, keep_rendering, save_changes
from tui.events import EngineEvent, EngineGone, StateEvent
from tui.link import EngineLink
from tui.terminal import image_widget

if TYPE_CHECKING:
    from tui.panes import LivePane, MotionPane, RenderPane, SettingsPane, SweepPane

T = TypeVar("T")
RUNNING = ("loading", "rendering", "paused")
TABS = (
    ("prompts", "Prompts"),
    ("motion", "Motion"),
    ("audio", "Audio"),
    ("render", "Render"),
    ("settings", "Settings"),
    ("sweep", "Sweep"),
)


def _panes():
    """The panes' module, imported after the first paint: it takes a third of a second."""
    import tui.panes

    return tui.panes


class DriftwaveApp(App):
    """The tabs over one Session, linked to the engine: edits reach a running render as live edits."""

    CSS_PATH = "app.tcss"
    TITLE = "Driftwave"
    COMMANDS = App.COMMANDS | {DriftwaveCommands}
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", id="save"),
        Binding("ctrl+o", "open", "Open", id="open", show=False),
        Binding("ctrl+r", "render", "Render", id="render"),
        Binding("ctrl+t", "pause", "Pause/Resume", id="pause"),
        Binding("ctrl+k", "cancel", "Cancel render", id="cancel", show=False),
        Binding("ctrl+q", "quit", "Quit", id="quit", priority=True),
        Binding("f1", "tab('prompts')", "Prompts", id="tab-prompts", show=False),
        Binding("f2", "tab('motion')", "Motion", id="tab-motion", show=False),
        Binding("f3", "tab('audio')", "Audio", id="tab-audio", show=False),
        Binding("f4", "tab('render')", "Render tab", id="tab-render", show=False),
        Binding("f5", "tab('settings')", "Settings", id="tab-settings", show=False),
        Binding("f6", "tab('sweep')", "Sweep", id="tab-sweep", show=False),
    ]

    engine_state: var[str] = var("disconnected", init=False)
    """What the engine reports it does ("disconnected" when none answers)."""
    resumable: var[dict | None] = var(None, init=False)
    """The run the engine was rendering when it vanished: the next Render resumes it."""

    def __init__(
        self,
        session,
        *,
        client: EngineClient | None = None,
        image_class: type | None = None,
        connect: bool = True,
        preview_interval: float = 0.5,
        live: dict | None = None,
    ) -> None:
        """``session``: a Session, or a callable making one (called after the first paint)."""
        super().__init__()
        self._session_source = session
        self.session = None if callable(session) else session
        self.client = client or EngineClient()
        self.image_class = image_class or image_widget()
        self.connect = connect
        self.preview_interval = preview_interval
        self.live_options = live  # main.py live: the session's audio source and recording
        self.serve_port = (live or {}).get("serve") or DEFAULT_PORT  # where the Serve switch serves the page
        self.engine_pid: int | None = None  # the engine process that answers (its state says)
        self.job: dict | None = None
        self.link = EngineLink(self, self.client)
        self._render_on_connect = False  # Render was pressed with no engine: it follows the hello
        self._restart_live = False  # the live session was cancelled to start again (serving switched)
        self._update_due: float | None = None
        self.edit_pause = 0.5  # seconds without typing before a live edit is sent

    def compose(self) -> ComposeResult:
        yield Header()
        tabs = ((("live", "Live"),) if self.live_options is not None else ()) + TABS
        with TabbedContent(initial=tabs[0][0], id="tabs"):
            for tab, title in tabs:
                with TabPane(title, id=tab):
                    yield Static("loading…", classes="loading")
        yield Footer()

    async def on_ready(self) -> None:
        """The first frame is on screen: now bring in the editors (settings, plots, engine)."""
        if self.session is None:
            try:
                self.session = self._session_source()
            except DriftwaveError as error:
                self.exit(return_code=2, message=f"error: {error}")
                return
        snapshot = await self.link.attach() if self.connect else None
        if snapshot and snapshot["state"] in RUNNING:  # its settings are what the panes show: no second build
            self._adopt(snapshot.get("job"))
            self.action_tab("sweep" if "sweep" in (snapshot.get("job") or {}) else "render")
        await self._mount_panes(ready=lambda: self._follow_engine(snapshot))

    def _follow_engine(self, snapshot: dict | None) -> None:
        self.refresh_title()
        self.set_interval(0.25, self._send_pending_update)
        if self.connect:
            if snapshot is not None:
                self.on_engine_message(snapshot)
            self.link.follow()

    async def _mount_panes(self, ready: Callable[[], None] | None = None) -> None:
        """Build the editors for the session. The render and sweep panes come first and ``ready``
        runs as soon as they are in, so engine events (a running job's progress and frame) show while the
        editors are built; the audio analysis starts last, its thread would slow the building."""
        panes = _panes()
        built = {}
        if self.live_options is not None and self.live_pane is None:
            serving = self.live_options.get("serve") is not None
            built["live"] = panes.LivePane.of_settings(
                self.image_class, self.session.settings, serving=serving, id="pane-live"
            )
        if not self.query(panes.RenderPane):
            built["render"] = panes.RenderPane(self.image_class, self.preview_interval, id="pane-render")
        if not self.query(panes.SweepPane):  # in before the engine's first state, like the render pane
            built["sweep"] = panes.SweepPane(id="pane-sweep")
        built |= {
            "prompts": panes.PromptsPane(self.session, id="pane-prompts"),
            "motion": panes.MotionPane(self.session, id="pane-motion"),
            "audio": panes.AudioPane(self.session, id="pane-audio"),
            "settings": panes.SettingsPane(self.session, id="pane-settings"),
        }

        tabs = self.query_one(TabbedContent)
        for tab, pane in built.items():
            if tab == "prompts" and ready is not None:
                ready()
                await self.screen.wait_for_refresh()  # on screen before the editors are built
            container = tabs.get_pane(tab)
            await container.remove_children()  # gone before the new pane takes its id
            await container.mount(pane)
        self.query_one(panes.AudioPane).analyse()

    # -- the panes ---------------------------------------------------------------------------------

    @property
    def render_pane(self) -> RenderPane:
        return self.query_one(_panes().RenderPane)

    @property
    def motion_pane(self) -> MotionPane:
        return self.query_one(_panes().MotionPane)

    @property
    def settings_pane(self) -> SettingsPane:
        return self.query_one(_panes().SettingsPane)

    @property
    def live_pane(self) -> LivePane | None:
        """The Live tab's pane; None in a TUI opened for editing (or before it is built)."""
        found = self.query(_panes().LivePane)
        return found.first() if found else None

    @property
    def sweep_pane(self) -> SweepPane | None:
        """The Sweep tab's pane (None before it is built)."""
        found = self.query(_panes().SweepPane)
        return found.first() if found else None

    def refresh_title(self) -> None:
        title = self.session.title if self.session else "loading"
        state = self.engine_state
        if state == "disconnected" and self.resumable:
            state = f"stopped · Render resumes run {self.resumable['timestring']}"
        self.sub_title = f"{title}  ·  engine {state}"

    def watch_engine_state(self) -> None:
        self.refresh_title()

    def watch_resumable(self) -> None:
        self.refresh_title()

    # -- the engine --------------------------------------------------------------------------------

    def on_engine_message(self, message: dict) -> None:
        """A decoded engine message, posted as its event's message to the pane that shows it (live
        frames to the Live tab, the rest to the Render tab); a state to the app as well."""
        if not self.is_running:
            return  # shutting down: the panes are being removed
        event = protocol.read_event(message)
        if event is None:
            return
        if isinstance(event, protocol.LiveFrame):
            shown_by = self.live_pane
        elif isinstance(event, protocol.BatchStarted | protocol.VariantUpdate | protocol.BatchProgress):
            shown_by = self.sweep_pane
        else:
            shown_by = None
        (shown_by or self.render_pane).post_message(EngineEvent.of(event))
        if isinstance(event, protocol.State):
            self.post_message(EngineEvent.of(event))
            if self.sweep_pane is not None:
                self.sweep_pane.post_message(EngineEvent.of(event))

    @on(StateEvent)
    def _engine_state_changed(self, message: StateEvent) -> None:
        snapshot = message.event
        first = self.engine_state == "disconnected"
        self.job = snapshot.job
        self.engine_pid = snapshot.pid or self.engine_pid
        self.engine_state = snapshot.state
        if first:
            render, self._render_on_connect = self._render_on_connect, False
            if snapshot.state in RUNNING:  # shown, not replaced by a render asked for meanwhile
                self.call_later(self._attach, self.job)
            elif render or self.live_options is not None:
                self.call_later(self.action_render)
        if self._restart_live and snapshot.state not in RUNNING:
            self._restart_live = False
            self.call_later(self.action_render)
        elif snapshot.state == "done":
            self.notify("render finished", title="Engine")

    @on(EngineGone)
    def _engine_gone(self, message: EngineGone) -> None:
        reason, self._render_on_connect = message.reason, False
        if self.engine_state in RUNNING:  # it vanished mid-render: the next Render resumes the run
            self.resumable = _resumable_run(self.job)
        self.engine_state = "disconnected"
        run = self.resumable["timestring"] if self.resumable else None
        if self.query(_panes().RenderPane):
            self.render_pane.show_gone(run)
        if run:
            reason += f"; Render starts a new engine and resumes run {run}"
        self.notify(reason, title="Engine", severity="error", timeout=10)

    async def on_sweep_pane_start(self, message) -> None:
        """A sweep of the session's settings, run by the engine (started when none runs)."""
        if self.engine_state in RUNNING:
            self.notify("a render is running: cancel it first", severity="warning")
            return
        if not self.client.connected:
            self.notify("connecting to the engine: press Sweep again once it answers", severity="warning")
            self.link.follow()
            return
        sweep = {"vary": message.vary, "zip": message.paired, "workers": message.workers, "resume": message.resume}
        preset = str(self.session.path) if self.session.path else None
        await self.link.request(
            "submit", settings=self.session.settings.model_dump(mode="json"), preset=preset, sweep=sweep
        )

    async def on_sweep_pane_stop(self, message) -> None:
        await self.action_cancel()

    def on_live_pane_control(self, message) -> None:
        self.run_worker(self.link.request("control", **message.changes), group="control")

    async def on_live_pane_serve(self, message) -> None:
        """Serving switched: the live session starts again with (or without) the page's sound."""
        self.live_options = {**self.live_options, "serve": self.serve_port if message.on else None}
        if self.engine_state in RUNNING:
            self._restart_live = True  # once the engine says the session ended
            await self.link.request("cancel")
        else:
            await self.action_render()

    def _adopt(self, job: dict | None) -> bool:
        """Make the running job's settings the session's, unless unsaved edits are open."""
        if self.session.dirty or not job or not job.get("settings"):
            return False
        from tui.session import Session

        try:
            self.session = Session.of_job(job)
        except DriftwaveError as error:
            self.notify(f"attached, but its settings could not be shown: {error}", title="Engine", severity="warning")
            return False
        return True

    async def _attach(self, job: dict | None) -> None:
        """Connected to a running render: show what it renders (panes rebuilt if they differ)."""
        shown = self.session.settings
        if self._adopt(job) and self.session.settings != shown:
            await self._mount_panes()
            self.refresh_title()
        if job and job.get("settings") and self.session.settings.model_dump(mode="json") != job["settings"]:
            self.notify("attached to the running render; your unsaved edits stay on screen", title="Engine")
        else:
            self.notify("attached to the running render: its settings are loaded", title="Engine")

    # -- edits --------------------------------------------------------------------------------------

    def on_edited(self, message) -> None:
        self.refresh_title()
        if self.query(_panes().MotionPane):
            self.motion_pane.edited_elsewhere(message.path)
        if self.engine_state in RUNNING and "sweep" in (self.job or {}):
            self.notify("a sweep renders the settings it started with: edits apply to the next one", timeout=4)
        elif self.engine_state in RUNNING:
            self._update_due = time.monotonic() + self.edit_pause  # a live edit: sent once typing pauses

    async def _send_pending_update(self) -> None:
        if self._update_due and time.monotonic() >= self._update_due and self.engine_state in RUNNING:
            self._update_due = None
            await self.link.request("update", settings=self.session.settings.model_dump(mode="json"))

    def on_audio_pane_analysed(self, message) -> None:
        self.motion_pane.variables = message.values

    # -- actions --------------------------------------------------------------------------------------

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    async def action_render(self) -> None:
        """Submit the settings (live: the live session); with no engine, start one and submit
        once it answers, unless it renders already (then that render is shown)."""
        if self.engine_state in RUNNING:
            self.notify("a render is running: pause or cancel it first", severity="warning")
            return
        if not self.client.connected:
            self._render_on_connect = True
            self.link.follow()
            return
        preset = str(self.session.path) if self.session.path else None
        settings = self.session.settings.model_dump(mode="json")
        if self.live_options is not None:
            self.action_tab("live")
            await self.link.request("submit", settings=settings, preset=preset, live=self.live_options)
            return
        self.action_tab("render")
        if self.resumable:
            await self._resume(self.resumable)
            return
        self._update_due = None  # the submit carries every edit
        await self.link.request("submit", settings=settings, preset=preset)

    async def _resume(self, run: dict) -> None:
        """Continue ``run`` (its engine vanished mid-render) from its last complete frame. The
        resume renders with the settings saved in the run (and its recorded live edits); edits
        made since are sent as a live edit once it runs, so they apply from the next frame."""
        timestring, frame = run["timestring"], _resume_frame(run["folder"])
        edited = self.session.settings.model_dump(mode="json") != run["settings"]
        if not await self.link.request("submit", settings=run["settings"], preset=run["preset"], resume=timestring):
            return  # still resumable: the next Render tries again
        self.resumable = None
        self.render_pane.show_resuming(timestring, frame, edited)
        self._update_due = time.monotonic() if edited else None  # sent once the engine reports it running

    async def action_pause(self) -> None:
        await self.link.request("resume" if self.engine_state == "paused" else "pause")

    async def action_cancel(self) -> None:
        await self.link.request("cancel")

    def jump_to(self, path: str) -> None:
        from tui.session import SCHEDULE_FIELDS

        if path in SCHEDULE_FIELDS:
            self.action_tab("motion")
            self.motion_pane.edit(path)
        elif path.startswith("audio."):
            self.action_tab("audio")
        elif path.startswith("prompting.negative"):
            self.action_tab("prompts")
        else:
            self.action_tab("settings")
            self.call_later(self.settings_pane.focus_field, path)

    # -- presets --------------------------------------------------------------------------------------

    def action_save(self) -> None:
        if self.session.path is None:
            self.action_save_as()
            return
        self._save(self.session.path)

    def action_save_as(self) -> None:
        default = str(self.session.path or "preset.toml")
        self.push_screen(Ask("Save the preset as (path):", default), lambda path: path and self._save(Path(path)))

    def _save(self, path: Path) -> None:
        if written := self._attempt(self.session.save, path, "Not saved"):
            self.notify(f"saved {written}")
            self.refresh_title()

    def action_open(self) -> None:
        self._unless_unsaved(
            lambda: self.push_screen(Ask("Open a preset (path):", str(self.session.path or "")), self._open)
        )

    async def _open(self, path: str | None) -> None:
        from tui.session import Session

        if session := self._attempt(Session.open, path, "Cannot open"):
            await self._replace_session(session)
            self.notify(f"opened {session.path}")

    def action_import(self) -> None:
        self._unless_unsaved(lambda: self.push_screen(Ask("Import a Deforum settings file (path):"), self._import))

    async def _import(self, path: str | None) -> None:
        from engine.deforum import import_deforum
        from engine.presets import Preset
        from tui.session import Session

        if not (result := self._attempt(import_deforum, path, "Cannot import")):
            return
        await self._replace_session(Session(Preset(result.settings)))
        self.session.saved = None  # an import is unsaved until written
        for warning in result.warnings:
            self.render_pane.log(f"import: {warning}")
        self.notify(f"imported {Path(path).name}: {len(result.warnings)} warnings (see the Render log)")

    def _attempt(self, load: Callable[[Any], T], path, failure: str) -> T | None:
        """``load(path)``, or None when no path was given or it failed (said under ``failure``)."""
        if not path:
            return None
        try:
            return load(path)
        except DriftwaveError as error:
            self.notify(_panes().error_text(error), title=failure, severity="error")
            return None

    def _unless_unsaved(self, then: Callable[[], object]) -> None:
        """Run ``then`` now, or once the user agrees to drop the unsaved edits."""
        if not self.session.dirty:
            then()
            return
        self.push_screen(discard_changes(self.session.title), lambda choice: then() if choice == "discard" else None)

    async def _replace_session(self, session) -> None:
        self.session = session
        self.resumable = None  # Render starts the new settings, not the stopped run of the old ones
        await self._mount_panes()
        self.refresh_title()

    # -- leaving --------------------------------------------------------------------------------------

    @work(group="quit")
    async def action_quit(self) -> None:
        """Quit, asking first whether to save unsaved edits and whether a running render goes on."""
        if self.session.dirty:
            choice = await self.push_screen_wait(save_changes(self.session.title))
            if choice == "stay":
                return
            if choice == "save":
                self.action_save()
                if self.session.dirty:
                    return
        choice = await self.push_screen_wait(keep_rendering()) if self.engine_state in RUNNING else "keep"
        if choice == "stay":
            return
        if choice == "stop":
            await self.link.request("cancel")
        await self.client.close()
        self.exit()

    def _handle_exception(self, error: Exception) -> None:
        """A bug: the traceback goes to tui.log, unsaved edits to a recovery preset, and the screen
        gets one line naming both, never the traceback. The engine renders on regardless."""
        report = record_crash(error, self.client.path.with_name("tui.log"), self.session, self.engine_state in RUNNING)
        if self.is_headless:
            super()._handle_exception(error)  # under Pilot the test sees the exception itself
        else:
            self.exit(return_code=1, message=report)


def record_crash(error: BaseException, log: Path, session, rendering: bool) -> str:
    """Append the traceback to ``log``, save the session's unsaved edits to its recovery preset,
    and return the line that says so."""
    import traceback

    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as file:
        file.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}\n{''.join(traceback.format_exception(error))}")
    report = f"Driftwave stopped on an unexpected error: {error} (the traceback is in {log})"
    if session is not None and session.dirty:
        target = session.recovery_path()
        try:
            session.save(target)
            report += f"; your unsaved edits are in {target}"
        except Exception as failure:
            report += f"; your unsaved edits could not be saved ({failure})"
    if rendering:
        report += "; the render goes on (run main.py again to attach)"
    return report


def _resumable_run(job: dict | None) -> dict | None:
    """What a new engine needs to resume the run ``job`` was rendering: its timestring (the run
    folder's name), folder and settings. None for a live session or a job that had no run yet."""
    if not job or job.get("live") is not None or "sweep" in job or not job.get("settings"):
        return None
    timestring = Path(job["folder"]).name if job.get("folder") else job.get("resume")
    if not timestring:
        return None
    return {
        "timestring": timestring,
        "folder": job.get("folder"),
        "settings": job["settings"],
        "preset": job.get("preset"),
    }


def _resume_frame(folder: str | None) -> int | None:
    """The frame a resume of the run in ``folder`` starts at: the frames its state.json counts as
    complete, 0 before the first state was saved; None when that cannot be read."""
    import json

    if not folder:
        return None
    try:
        return int(json.loads((Path(folder) / "state.json").read_text())["frames_done"])
    except FileNotFoundError:
        return 0
    except (OSError, ValueError, KeyError, TypeError):
        return None


def make_app(preset: str | Path | None = None, overrides: tuple[str, ...] = (), **options) -> DriftwaveApp:
    """The app for ``preset`` (a path; none: the defaults), loaded after the first paint."""

    def load():
        from engine.errors import collecting_notices
        from engine.presets import load_preset
        from tui.session import Session

        if preset is None:
            return Session()
        with collecting_notices():
            return Session(load_preset(preset, overrides))

    return DriftwaveApp(load, **options)
