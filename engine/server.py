"""The engine process: owns the model and the render; clients (TUIs) attach over a Unix socket.

Started detached (its own session) so a dropped SSH connection does not stop a render. One
job at a time runs in a worker thread; every connected client gets every event, and a client
that attaches later gets a snapshot (``state``) with the job, its settings, its progress and
the newest frame. Live edits (``update``) reach the render loop before its next frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import socket
import stat
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from engine.errors import DriftwaveError, ErrorGroup, collecting_notices
from engine.jobs import JobControl, live_job, render_job, run_job, sweep_job
from engine.protocol import (
    MAX_LINE,
    REQUESTS,
    BatchProgress,
    BatchStarted,
    Done,
    Event,
    Failed,
    FrameWritten,
    LiveFrame,
    Log,
    Progress,
    ProtocolError,
    RunStarted,
    State,
    VariantUpdate,
    decode,
    log_path,
    runtime_dir,
    socket_path,
    to_wire,
    version_problem,
)
from engine.settings import Settings

# what may change while a render runs; the rest (size, model, mode, output place) needs a new run
LIVE_GROUPS = {
    "prompts",
    "prompting",
    "motion",
    "sampling",
    "anti_blur",
    "coherence",
    "depth",
    "hybrid",
    "guidance",
    "audio",
    "live",
}
FIXED_FIELDS = {"coherence.diffusion_cadence", "audio.file", "audio.offset"}


class EngineBusy(DriftwaveError):
    pass


class Engine:
    def __init__(self, path: Path, *, idle_exit: float = 0.0) -> None:
        self.path = path
        self.idle_exit = idle_exit
        self.clients: set[asyncio.StreamWriter] = set()
        self.state = "idle"
        self.job: dict[str, Any] | None = None
        self.progress: dict[str, Any] | None = None
        self.latest_frame: str | None = None
        self.log: deque[str] = deque(maxlen=200)
        self.control = JobControl()  # the running job's pause, cancel and edits
        self._worker: threading.Thread | None = None
        self._stop = asyncio.Event()
        self._last_activity = time.monotonic()
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- serving ----------------------------------------------------------------------------------

    async def serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        prepare_socket(self.path)
        server = await asyncio.start_unix_server(self._client, path=str(self.path), limit=MAX_LINE)
        os.chmod(self.path, 0o600)
        self._say(f"engine listening on {self.path} (pid {os.getpid()})")
        watchdog = asyncio.create_task(self._idle_watch())
        try:
            await self._stop.wait()
        finally:
            watchdog.cancel()
            for writer in list(self.clients):
                writer.close()
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.clients.add(writer)
        self._last_activity = time.monotonic()
        try:
            while not reader.at_eof():
                try:
                    line = await reader.readline()
                except (ConnectionError, ValueError, asyncio.CancelledError):  # ValueError: over MAX_LINE
                    break
                if not line.strip():
                    continue
                await self._handle(line, writer)
        finally:
            self.clients.discard(writer)
            self._last_activity = time.monotonic()
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(self, line: bytes, writer: asyncio.StreamWriter) -> None:
        try:
            message = decode(line)
        except ProtocolError as error:
            await self._send(writer, to_wire(Failed(str(error), "protocol")))
            return
        problem = version_problem(message, side="engine")
        if problem:
            await self._send(writer, to_wire(Failed(problem, "protocol")))
            return
        kind = message["type"]
        if kind not in REQUESTS:
            await self._send(writer, to_wire(Failed(f"unknown request {kind!r}", "protocol")))
            return
        try:
            reply = getattr(self, f"_on_{kind}")(message)
        except DriftwaveError as error:
            where = error.field or kind
            text = str(error) if isinstance(error, ErrorGroup) else error.message
            await self._send(writer, to_wire(Failed(text, where, error.hint, error.field)))
            return
        if reply is not None:
            await self._send(writer, reply)

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        try:
            writer.write(data)
            await writer.drain()
        except (ConnectionError, RuntimeError):
            self.clients.discard(writer)

    def broadcast(self, data: bytes) -> None:
        """Send to every client; callable from any thread."""
        if self.loop is None:
            return
        for writer in list(self.clients):
            self.loop.call_soon_threadsafe(self._write_quietly, writer, data)

    def _write_quietly(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        if writer.is_closing():
            self.clients.discard(writer)
            return
        writer.write(data)

    async def _idle_watch(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            idle = time.monotonic() - self._last_activity
            if (
                self.idle_exit
                and not self.clients
                and self.state not in ("rendering", "paused", "loading")
                and idle > self.idle_exit
            ):
                self._say(f"no clients and no render for {self.idle_exit:g} s: exiting")
                self._stop.set()

    # -- requests ---------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        return to_wire(State(self.state, self.job, self.progress, self.latest_frame, list(self.log)[-50:], os.getpid()))

    def _on_hello(self, message: dict) -> bytes:
        return self.snapshot()

    def _on_status(self, message: dict) -> bytes:
        return self.snapshot()

    def _on_submit(self, message: dict) -> None:
        if self.state in ("loading", "rendering", "paused"):
            raise EngineBusy("a render is already running", field="submit", hint="cancel it first, or wait for it")
        settings = _validated(message.get("settings") or {})
        _check_expressions(settings)
        self.job = {
            "settings": settings.model_dump(mode="json"),
            "preset": message.get("preset"),
            "resume": message.get("resume"),
            "folder": None,
            "outputs": [],
            "submitted": time.time(),
        }
        live, sweep = message.get("live"), message.get("sweep")
        if live is not None:
            self.job["live"] = live
        if sweep is not None:
            self.job.update(sweep=sweep, variants={})
        self.progress, self.latest_frame = None, None
        control = self.control = JobControl()
        self._set_state("loading")
        if live is not None:
            work = functools.partial(live_job, settings, live, self.on_event, control)
        elif sweep is not None:
            work = functools.partial(sweep_job, self.job["settings"], sweep, self.on_event, control)
        else:
            work = functools.partial(render_job, settings, message.get("resume"), self.on_event, control)
        self._worker = threading.Thread(target=self._run, args=(work,), name="render", daemon=True)
        self._worker.start()
        return None

    def _on_update(self, message: dict) -> bytes | None:
        if self.job is None:
            raise DriftwaveError("there is no render to update", field="update", hint="submit one first")
        if "sweep" in self.job:
            raise DriftwaveError(
                "a sweep renders the settings it started with",
                field="update",
                hint="edits apply to the next sweep: cancel this one and start it again",
            )
        settings = _validated(message.get("settings") or {})
        current = _validated(self.job["settings"])
        changed = _changed_paths(current, settings)
        fixed = [path for path in changed if path.split(".")[0] not in LIVE_GROUPS or path in FIXED_FIELDS]
        if fixed:
            raise DriftwaveError(
                f"{', '.join(fixed)} cannot change during a render",
                field=fixed[0],
                hint="cancel and start a new render to change these",
            )
        _check_expressions(settings)  # a bad edit is refused here, never in the loop
        # said before the render thread can see the edit: clients get "received" before "applied"
        self._say(f"edit received ({', '.join(changed) or 'no change'}); it applies from the next frame")
        self.job["settings"] = settings.model_dump(mode="json")
        self.control.edit(settings)
        return None

    def _on_control(self, message: dict) -> None:
        """Live mode's quick controls: strength, cfg, prompt, frozen (null: back to the schedule);
        ``snapshot: true`` writes the picture to the session's folder; ``reconnect: true`` opens a
        lost audio input again."""
        session = self.control.live_session
        if session is None:
            raise DriftwaveError("there is no live session to control", field="control", hint="start one: main.py live")
        changes = {key: message[key] for key in ("strength", "cfg", "prompt", "frozen") if key in message}
        session.control(**changes)
        if message.get("snapshot"):
            self._say(f"snapshot: {session.snapshot(Path(self.job['folder']) / 'snapshots')}")
        if message.get("reconnect"):
            self._say(session.reconnect())
        if changes:
            self._say("live: " + ", ".join(f"{key} {value}" for key, value in changes.items()))

    def _on_pause(self, message: dict) -> None:
        if self.job is not None and "sweep" in self.job:
            raise DriftwaveError(
                "a sweep cannot pause: its variants render in other processes",
                field="pause",
                hint="cancel it; starting it again with its timestring skips the finished variants",
            )
        if self.state == "rendering":
            self.control.paused.set()
            self._set_state("paused")

    def _on_resume(self, message: dict) -> None:
        if self.state == "paused":
            self.control.paused.clear()
            self._set_state("rendering")

    def _on_cancel(self, message: dict) -> None:
        if self.state in ("loading", "rendering", "paused"):
            self.control.cancel()
            self._say("cancelling after the frame being written")

    def _on_shutdown(self, message: dict) -> None:
        self.control.cancel()
        self._say("shutting down")
        asyncio.get_running_loop().create_task(self._shutdown())

    async def _shutdown(self) -> None:
        if self._worker is not None:  # let the frame being written finish
            await asyncio.to_thread(self._worker.join, 60)
        self._stop.set()

    # -- the job thread -----------------------------------------------------------------------------

    def _run(self, work) -> None:
        """The job's thread: its events broadcast, its end the engine's state."""
        job = self.job or {}
        where = "live" if "live" in job else "sweep" if "sweep" in job else "render"
        state, _ = run_job(work, self.on_event, where=where)
        if state == "done" and self.control.cancelled.is_set():
            state = "cancelled"
        self._set_state(state)

    def on_event(self, event: Event) -> None:
        """A job's event: kept for the snapshot, then sent to every client."""
        if isinstance(event, Progress):
            self.progress = dataclasses.asdict(event)
        elif isinstance(event, LiveFrame):
            self.progress = {"frame": event.frame + 1, "total": None, "fps": event.fps, "eta_s": None}
            self.latest_frame = event.path
        elif isinstance(event, FrameWritten):
            self.latest_frame = event.path
        elif isinstance(event, Log):
            self._remember(event.message)
        elif isinstance(event, Failed):
            if event.traceback:
                self._remember(event.traceback)
            self._remember(f"error: {event.message}")
        elif isinstance(event, RunStarted) and self.job is not None:
            self.job.update(folder=event.folder, timestring=event.timestring, backend=event.backend)
            self._remember(f"rendering to {event.folder} with {event.backend}")
            self._set_state("rendering")
        elif isinstance(event, BatchStarted) and self.job is not None:
            self.job.update(folder=event.folder, timestring=event.timestring)
            self._remember(f"sweep of {len(event.variants)} variants in {event.folder}")
            self._set_state("rendering")
        elif isinstance(event, VariantUpdate) and self.job is not None:
            self.job["variants"][event.name] = dataclasses.asdict(event)  # a TUI attaching later sees each
        elif isinstance(event, BatchProgress):
            self.progress = {"frame": event.frames, "total": event.total, "fps": event.fps, "eta_s": event.eta_s}
        elif isinstance(event, Done) and self.job is not None:
            self.job["outputs"] = event.outputs
        if isinstance(event, Progress | LiveFrame) and self.state == "loading":
            self._set_state("rendering")
        self.broadcast(to_wire(event))

    # -- helpers -------------------------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        self.state = state
        self._last_activity = time.monotonic()
        self.broadcast(self.snapshot())

    def _say(self, message: str) -> None:
        self._remember(message)
        self.broadcast(to_wire(Log(message)))

    def _remember(self, message: str) -> None:
        self.log.append(message)
        print(message, flush=True)


def _validated(data: dict) -> Settings:
    from engine.presets import settings_from_data

    with collecting_notices():
        return settings_from_data(data)


def _check_expressions(settings: Settings) -> None:
    """Every schedule and prompt compiles (without the audio analysis, which the job does)."""
    from engine.plan import compile_plan

    with collecting_notices():
        compile_plan(settings)


def _changed_paths(before: Settings, after: Settings) -> list[str]:
    old, new = before.model_dump(mode="json"), after.model_dump(mode="json")
    changed = []
    for group, values in new.items():
        if not isinstance(values, dict) or group == "prompts":
            if values != old[group]:
                changed.append(group)
            continue
        changed += [f"{group}.{name}" for name, value in values.items() if value != old[group][name]]
    return changed


def prepare_socket(path: Path) -> None:
    """A safe directory (see :func:`socket_directory`), a stale socket removed, a live one refused.

    Only a socket of ours is ever removed: a file or a link at ``path``, or another user's
    socket, is refused (a mistyped ``--socket`` must not delete a file).
    """
    socket_directory(path)
    try:
        found = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(found.st_mode):
        raise DriftwaveError(f"{path} exists and is not a socket", hint="choose another --socket path")
    if found.st_uid != os.geteuid():
        raise DriftwaveError(
            f"the socket {path} belongs to another user", hint="choose another --socket path, in a directory of yours"
        )
    if engine_running(path):
        raise DriftwaveError(f"an engine is already running on {path}", hint="the TUI attaches to it")
    path.unlink()  # left behind by an engine that died


def socket_directory(path: Path) -> Path:
    """The directory of the socket ``path``, created 0700 when missing, checked when it exists.

    An existing directory's mode is never changed (``--socket /tmp/x.sock`` leaves /tmp as it
    is), except our own default one (:func:`runtime_dir`), which is made 0700 again. It must be
    owned by this user (or root, who can reach our files anyway) and must not be writable by
    group or others, unless it has the sticky bit: in a sticky directory such as /tmp others
    may add files but cannot remove or rename ours, so nobody can put their socket in place of
    ours, and the socket itself is 0600. Anything else is refused with a DriftwaveError.
    """
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True)
        os.chmod(directory, 0o700)  # we just made it: exactly 0700, whatever the umask
        return directory
    except FileExistsError:
        pass
    except OSError as error:
        raise DriftwaveError(
            f"cannot create the socket directory {directory} ({error.strerror})",
            hint="choose a --socket path in a directory you can write",
        ) from None
    found = directory.stat()
    if not stat.S_ISDIR(found.st_mode):
        raise DriftwaveError(f"{directory} is not a directory", hint="choose another --socket path")
    if found.st_uid not in (os.geteuid(), 0):
        raise DriftwaveError(
            f"the socket directory {directory} belongs to another user",
            hint="choose a --socket path in a directory of yours (a new one is created private, 0700)",
        )
    if directory == runtime_dir() and found.st_uid == os.geteuid():
        if stat.S_IMODE(found.st_mode) != 0o700:
            os.chmod(directory, 0o700)  # our own directory: keep it private
    elif found.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not found.st_mode & stat.S_ISVTX:
        raise DriftwaveError(
            f"the socket directory {directory} is writable by others "
            f"(mode {stat.S_IMODE(found.st_mode):04o}), so they could replace the socket",
            hint=f"run chmod go-w {directory}, or choose a --socket path in a directory of yours",
        )
    return directory


def engine_running(path: Path) -> bool:
    if not path.exists() or not stat.S_ISSOCK(path.stat().st_mode):
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def run_engine(path: Path | None = None, *, idle_exit: float = 0.0) -> int:
    """``main.py engine``: serve until shutdown (or idle, when ``idle_exit`` > 0)."""
    path = path or socket_path()
    try:
        asyncio.run(Engine(path, idle_exit=idle_exit).serve())
    except DriftwaveError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


# Runs in a short-lived middle process, so the engine is nobody's child once it exits: it outlives
# the TUI, and the TUI neither reaps it nor holds it as a subprocess handle.
_LAUNCHER = """import subprocess, sys
log = open(sys.argv[1], "ab")
engine = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                          start_new_session=True, close_fds=True)
print(engine.pid)
"""


def spawn_engine(path: Path | None = None, *, idle_exit: float = 600.0) -> int:
    """Start an engine detached from this terminal and process; returns its pid."""
    import subprocess

    path = path or socket_path()
    socket_directory(path)  # before engine.log is written there
    main = Path(__file__).resolve().parent.parent / "main.py"
    command = [sys.executable, str(main), "engine", "--socket", str(path), "--idle-exit", str(idle_exit)]
    launched = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", _LAUNCHER, str(log_path(path)), *command],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if launched.returncode != 0:
        raise DriftwaveError(f"could not start the engine: {launched.stderr.strip()[-500:]}")
    return int(launched.stdout)
