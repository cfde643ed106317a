"""The Driftwave terminal UI: edit a preset while the engine process renders it.

``make_app`` assembles it. The app talks to the engine over its socket from an async worker,
starts a detached engine when none runs, shows a running render when it attaches, and never
imports torch: it starts fast and stays responsive over SSH.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Header, Input, Label, Static, TabbedContent, TabPane

from engine.errors import DriftwaveError
from tui.client import EngineClient, EngineUnavailable
from tui.terminal import image_widget

RUNNING = ("loading", "rendering", "paused")
TABS = (
    ("prompts", "Prompts"),
    ("motion", "Motion"),
    ("audio", "Audio"),
    ("render", "Render"),
    ("settings", "Settings"),
)


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


class DriftwaveCommands(Provider):
    """Command palette: presets, import, render control, and a jump to any setting."""

    def _commands(self) -> list[tuple[str, str, object]]:
        app = self.app
        commands = [
            ("Open preset…", "open a TOML preset", app.action_open),
            ("Save preset", "write the preset (comments kept)", app.action_save),
            ("Save preset as…", "write the preset to a new file", app.action_save_as),
            ("Import Deforum settings…", "read a Deforum settings file into the editor", app.action_import),
            ("Render", "submit these settings to the engine", app.action_render),
            ("Pause / resume render", "", app.action_pause),
            ("Cancel render", "stop after the frame being written (resumable)", app.action_cancel),
        ]
        from engine.settings import FIELDS

        for name, (group, field) in FIELDS.items():
            commands.append((f"Jump to {name}", f"[{group}]", lambda path=f"{group}.{field}": app.jump_to(path)))
        return commands

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands()[:7]:
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)


class DriftwaveApp(App):
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
    ]

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
        self.engine_state = "disconnected"
        self.engine_pid: int | None = None  # the engine process that answers (its state says)
        self.job: dict | None = None
        self.resumable: dict | None = None  # the run the engine was rendering when it vanished
        self._update_due: float | None = None

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
        await self._load()

    async def _load(self) -> None:
        if self.session is None:
            try:
                self.session = self._session_source()
            except DriftwaveError as error:
                self.exit(return_code=2, message=f"error: {error}")
                return
        snapshot = await self._attach_early() if self.connect else None
        await self._mount_panes(ready=lambda: self._follow_engine(snapshot))

    def _follow_engine(self, snapshot: dict | None) -> None:
        self.refresh_title()
        self.set_interval(0.25, self._send_pending_update)
        if self.connect:
            if snapshot is not None:
                self.on_engine_message(snapshot)
            self.engine_loop()

    async def _attach_early(self) -> dict | None:
        """An engine already running: its snapshot, taken before the panes are built, so a
        running job's settings are what they show (no second build). None when none runs."""
        try:
            await self.client.connect(start=False)
            snapshot = await self.client.hello(timeout=2.0)
        except (EngineUnavailable, OSError):
            await self.client.close()
            return None
        if snapshot["state"] in RUNNING:
            self._adopt(snapshot.get("job"))
            self.action_tab("render")
        return snapshot

    async def _mount_panes(self, ready: Callable[[], None] | None = None) -> None:
        """Build the editors for the session. The render pane comes first and ``ready`` runs as
        soon as it is in, so engine events (a running job's progress and frame) show while the
        editors are built; the audio analysis starts last, its thread would slow the building."""
        from tui.panes import AudioPane, MotionPane, PromptsPane, RenderPane, SettingsPane

        panes = {}
        if self.live_options is not None and not self.query("#pane-live"):
            panes["live"] = self._live_pane()
        if not self.query("#pane-render"):
            panes["render"] = RenderPane(self.image_class, self.preview_interval, id="pane-render")
        panes |= {
            "prompts": PromptsPane(self.session, id="pane-prompts"),
            "motion": MotionPane(self.session, id="pane-motion"),
            "audio": AudioPane(self.session, id="pane-audio"),
            "settings": SettingsPane(self.session, id="pane-settings"),
        }
        for tab, pane in panes.items():
            if tab == "prompts" and ready is not None:
                ready()
                await self.screen.wait_for_refresh()  # on screen before the editors are built
            container = self.query_one(f"#{tab}", TabPane)
            await container.remove_children()  # gone before the new pane takes its id
            await container.mount(pane)
        self.pane("audio").analyse()

    def _live_pane(self):
        from engine.errors import collecting_notices
        from engine.plan import compile_plan
        from tui.live import LivePane

        with collecting_notices():
            first = compile_plan(self.session.settings).frame(0)
        return LivePane(self.image_class, first.strength, first.cfg, id="pane-live")

    def on_live_pane_control(self, message) -> None:
        self.run_worker(self._request("control", **message.changes), group="control")

    def pane(self, name: str):
        return self.query_one(f"#pane-{name}")

    def refresh_title(self) -> None:
        title = self.session.title if self.session else "loading"
        state = self.engine_state
        if state == "disconnected" and self.resumable:
            state = f"stopped · Render resumes run {self.resumable['timestring']}"
        self.sub_title = f"{title}  ·  engine {state}"

    # -- the engine --------------------------------------------------------------------------------

    @work(exclusive=True, group="engine", exit_on_error=False)
    async def engine_loop(self) -> None:
        """Connect (starting an engine if none runs, unless already connected) and follow its
        events until it goes."""
        try:
            if not self.client.connected:
                await self.client.connect()
                self.on_engine_message(await self.client.hello())
        except (EngineUnavailable, OSError) as error:
            await self.client.close()
            self._engine_gone(str(error))
            return
        try:
            async for message in self.client.events():
                self.on_engine_message(message)
        finally:
            await self.client.close()  # whatever ends the loop (the app exiting too) lets the socket go
        self._engine_gone("the engine closed the connection (it stopped or crashed); your edits are kept")

    def _engine_gone(self, message: str) -> None:
        if not self.is_running:
            return
        if self.engine_state in RUNNING:  # it vanished mid-render: the next Render resumes the run
            self.resumable = _resumable_run(self.job)
        self.engine_state = "disconnected"
        self.refresh_title()
        status = "disconnected — press Render to start a new engine"
        if self.resumable:
            run = self.resumable["timestring"]
            status = f"stopped while rendering run {run}; your edits are kept — press Render to resume it"
            message += f"; Render starts a new engine and resumes run {run}"
        if self.query("#pane-render"):
            self.pane("render").show_state(status, None)
        self.notify(message, title="Engine", severity="error", timeout=10)

    def on_engine_message(self, message: dict) -> None:
        """An engine event, read as its protocol type and handed to its handler."""
        if not self.is_running:
            return  # shutting down: the panes are being removed
        from engine import protocol

        event = protocol.read_event(message)
        handlers = {
            protocol.State: self._show_engine_state,
            protocol.LiveFrame: self._show_live_frame,
            protocol.Progress: self._show_progress,
            protocol.FrameWritten: lambda frame: setattr(self.pane("render"), "pending_frame", frame.path),
            protocol.RunStarted: lambda run: self.pane("render").log(f"rendering to {run.folder} with {run.backend}"),
            protocol.Log: lambda log: self.pane("render").log(log.message),
            protocol.Failed: self._show_failure,
            protocol.Done: lambda done: self.pane("render").log(f"done: {len(done.outputs)} files"),
        }
        if event is not None:
            handlers[type(event)](event)

    def _show_engine_state(self, snapshot) -> None:
        pane = self.pane("render")
        first = self.engine_state == "disconnected"
        self.engine_state, self.job = snapshot.state, snapshot.job
        self.engine_pid = snapshot.pid or self.engine_pid
        pane.show_state(self.engine_state, self.job)
        if (snapshot.progress or {}).get("total"):
            pane.show_progress(**_progress(snapshot.progress))
        if snapshot.latest_frame:
            pane.pending_frame = snapshot.latest_frame
        if first:
            pane.show_pending_frame()  # a running job's latest frame now, not a tick later
            for line in snapshot.log:
                pane.log(line)
            if self.engine_state in RUNNING:
                self.call_later(self._attach, self.job)
            elif self.live_options is not None:
                self.call_later(self.action_render)
        if self.engine_state == "done":
            self.notify("render finished", title="Engine")
        self.refresh_title()

    def _show_live_frame(self, frame) -> None:
        if self.query("#pane-live"):
            self.pane("live").show(frame)
        else:  # a TUI opened for editing, attached to a live session
            self.pane("render").pending_frame = frame.path

    def _show_progress(self, progress) -> None:
        if progress.total:
            self.pane("render").show_progress(progress.frame, progress.total, progress.fps or 0.0, progress.eta_s)

    def _show_failure(self, failure) -> None:
        hint = failure.hint or ""
        if (failure.field or "").startswith("model."):  # the CLI's hint names --set; here it is the Settings tab
            hint = "to see the motion without a model, set model.backend to preview (Settings)"
        self.pane("render").log(f"error ({failure.where}): {failure.message}" + (f" — {hint}" if hint else ""))
        self.notify(
            f"{failure.where}: {failure.message}\n{hint}".strip(), title="Engine error", severity="error", timeout=12
        )

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

    async def _request(self, kind: str, **fields) -> bool:
        """Send a request; False (and a warning) when no engine takes it."""
        if not self.client.connected:
            self.notify("not connected to the engine", severity="warning")
            return False
        try:
            await self.client.send(kind, **fields)
        except (EngineUnavailable, OSError) as error:  # it died just now: the engine loop says so
            self.notify(f"the engine did not take the {kind} request ({error})", severity="warning")
            return False
        return True

    # -- edits --------------------------------------------------------------------------------------

    def on_edited(self, message) -> None:
        from tui.session import SCHEDULE_FIELDS

        self.refresh_title()
        motion = self.query("#pane-motion")
        if (
            motion
            and message.path != motion.first().current
            and (message.path in SCHEDULE_FIELDS or message.path.startswith(("audio", "animation")))
        ):
            motion.first().replot()
        if self.engine_state in RUNNING:
            self._update_due = time.monotonic() + 0.5  # a live edit: sent once typing pauses

    async def _send_pending_update(self) -> None:
        if self._update_due and time.monotonic() >= self._update_due and self.engine_state in RUNNING:
            self._update_due = None
            await self._request("update", settings=self.session.settings.model_dump(mode="json"))

    def on_audio_pane_analysed(self, message) -> None:
        motion = self.pane("motion")
        motion.variables = message.values
        motion.replot()

    # -- actions --------------------------------------------------------------------------------------

    def action_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab

    async def action_render(self) -> None:
        if self.engine_state in RUNNING:
            self.notify("a render is running: pause or cancel it first", severity="warning")
            return
        if not self.client.connected:
            engine = self.engine_loop()
            deadline = time.monotonic() + 30.0  # the client's start timeout, and its hello
            while not (self.client.connected and self.engine_state != "disconnected"):  # hello answered
                if engine.is_finished or time.monotonic() > deadline:
                    break
                await self._sleep(0.05)
            if self.engine_state in RUNNING:
                return  # the engine it reached runs a render already: that one is shown, not replaced
        preset = str(self.session.path) if self.session.path else None
        settings = self.session.settings.model_dump(mode="json")
        if self.live_options is not None:
            self.action_tab("live")
            await self._request("submit", settings=settings, preset=preset, live=self.live_options)
            return
        self.action_tab("render")
        if self.resumable:
            await self._resume(self.resumable)
            return
        self._update_due = None  # the submit carries every edit
        await self._request("submit", settings=settings, preset=preset)

    async def _resume(self, run: dict) -> None:
        """Continue ``run`` (its engine vanished mid-render) from its last complete frame. The
        resume renders with the settings saved in the run (and its recorded live edits); edits
        made since are sent as a live edit once it runs, so they apply from the next frame."""
        timestring, frame = run["timestring"], _resume_frame(run["folder"])
        edited = self.session.settings.model_dump(mode="json") != run["settings"]
        if not await self._request("submit", settings=run["settings"], preset=run["preset"], resume=timestring):
            return  # still resumable: the next Render tries again
        self.resumable = None
        start = f"from frame {frame}" if frame is not None else "from its last complete frame"
        pane = self.pane("render")
        pane.show_state(f"resuming run {timestring} {start}", None)
        pane.log(
            f"resuming run {timestring} {start} with the settings saved in the run"
            + ("; your edits follow as a live edit once it runs" if edited else "")
        )
        self._update_due = time.monotonic() if edited else None  # sent once the engine reports it running

    async def action_pause(self) -> None:
        await self._request("resume" if self.engine_state == "paused" else "pause")

    async def action_cancel(self) -> None:
        await self._request("cancel")

    def action_save(self) -> None:
        if self.session.path is None:
            self.action_save_as()
            return
        self._save(self.session.path)

    def action_save_as(self) -> None:
        default = str(self.session.path or "preset.toml")
        self.push_screen(Ask("Save the preset as (path):", default), lambda path: path and self._save(Path(path)))

    def _save(self, path: Path) -> None:
        from tui.panes import error_text

        try:
            written = self.session.save(path)
        except DriftwaveError as error:
            self.notify(error_text(error), title="Not saved", severity="error")
            return
        self.notify(f"saved {written}")
        self.refresh_title()

    def action_open(self) -> None:
        self._unless_unsaved(
            lambda: self.push_screen(Ask("Open a preset (path):", str(self.session.path or "")), self._open)
        )

    async def _open(self, path: str | None) -> None:
        if not path:
            return
        from tui.panes import error_text
        from tui.session import Session

        try:
            session = Session.open(path)
        except DriftwaveError as error:
            self.notify(error_text(error), title="Cannot open", severity="error")
            return
        await self._replace_session(session)
        self.notify(f"opened {session.path}")

    def action_import(self) -> None:
        self._unless_unsaved(lambda: self.push_screen(Ask("Import a Deforum settings file (path):"), self._import))

    async def _import(self, path: str | None) -> None:
        if not path:
            return
        from engine.deforum import import_deforum
        from engine.presets import Preset
        from tui.panes import error_text
        from tui.session import Session

        try:
            result = import_deforum(path)
        except DriftwaveError as error:
            self.notify(error_text(error), title="Cannot import", severity="error")
            return
        await self._replace_session(Session(Preset(result.settings)))
        self.session.saved = None  # an import is unsaved until written
        for warning in result.warnings:
            self.pane("render").log(f"import: {warning}")
        self.notify(f"imported {Path(path).name}: {len(result.warnings)} warnings (see the Render log)")

    def _unless_unsaved(self, then) -> None:
        """Run ``then`` now, or once the user agrees to drop the unsaved edits."""
        if not self.session.dirty:
            then()
            return
        question = f"Discard the unsaved changes to {self.session.title.rstrip(' *')}?"
        self.push_screen(
            Choice(question, [("discard", "Discard"), ("stay", "Cancel")]),
            lambda choice: then() if choice == "discard" else None,
        )

    async def _replace_session(self, session) -> None:
        self.session = session
        self.resumable = None  # Render starts the new settings, not the stopped run of the old ones
        await self._mount_panes()
        self.refresh_title()

    def jump_to(self, path: str) -> None:
        from tui.session import SCHEDULE_FIELDS

        if path in SCHEDULE_FIELDS:
            self.action_tab("motion")
            self.pane("motion").select(path)
            self.query_one("#schedule-input").focus()
        elif path.startswith("audio."):
            self.action_tab("audio")
        elif path.startswith("prompting.negative"):
            self.action_tab("prompts")
        else:
            self.action_tab("settings")
            self.call_later(self.pane("settings").focus_field, path)

    async def action_quit(self) -> None:
        if self.session.dirty:
            self.push_screen(
                Choice(
                    f"Save the changes to {self.session.title.rstrip(' *')}?",
                    [("save", "Save"), ("discard", "Discard"), ("stay", "Cancel")],
                ),
                self._after_save,
            )
        else:
            await self._after_save("discard")

    async def _after_save(self, choice: str) -> None:
        if choice == "stay":
            return
        if choice == "save":
            self.action_save()
            if self.session.dirty:
                return
        if self.engine_state in RUNNING:
            self.push_screen(
                Choice(
                    "A render is running. Keep it going after the TUI closes?",
                    [("keep", "Keep rendering"), ("stop", "Stop it"), ("stay", "Cancel")],
                ),
                self._leave,
            )
        else:
            await self._leave("keep")

    async def _leave(self, choice: str) -> None:
        if choice == "stay":
            return
        if choice == "stop":
            await self._request("cancel")
        await self.client.close()
        self.exit()

    # -- the unexpected ------------------------------------------------------------------------------

    def _handle_exception(self, error: Exception) -> None:
        """A bug: the traceback goes to tui.log, unsaved edits to a recovery preset, and the screen
        gets one line naming both, never the traceback. The engine renders on regardless."""
        report = self.record_crash(error)
        if self.is_headless:
            super()._handle_exception(error)  # under Pilot the test sees the exception itself
        else:
            self.exit(return_code=1, message=report)

    def record_crash(self, error: BaseException) -> str:
        import traceback

        log = self.client.path.with_name("tui.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as file:
            file.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}\n{''.join(traceback.format_exception(error))}")
        report = f"Driftwave stopped on an unexpected error: {error} (the traceback is in {log})"
        if self.session is not None and self.session.dirty:
            target = self.session.recovery_path()
            try:
                self.session.save(target)
                report += f"; your unsaved edits are in {target}"
            except Exception as failure:
                report += f"; your unsaved edits could not be saved ({failure})"
        if self.engine_state in RUNNING:
            report += "; the render goes on (run main.py again to attach)"
        return report

    @staticmethod
    async def _sleep(seconds: float) -> None:
        import asyncio

        await asyncio.sleep(seconds)


def _resumable_run(job: dict | None) -> dict | None:
    """What a new engine needs to resume the run ``job`` was rendering: its timestring (the run
    folder's name), folder and settings. None for a live session or a job that had no run yet."""
    if not job or job.get("live") is not None or not job.get("settings"):
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


def _progress(fields: dict) -> dict:
    return {
        "frame": fields["frame"],
        "total": fields["total"],
        "fps": fields.get("fps") or 0.0,
        "eta": fields.get("eta_s"),
    }


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
