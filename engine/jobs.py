"""Jobs: a render or a live session, its events to one callback, with one stop path (pause,
cancel, live edits: :class:`JobControl`) and one error path (:func:`run_job`).

The engine's socket server runs jobs on a thread and broadcasts their events; ``main.py live
--headless`` runs the same live job in the foreground and prints them.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from engine.errors import DriftwaveError, ErrorGroup, collecting_notices
from engine.protocol import Event, Failed, LiveFrame, Log, RunStarted
from engine.settings import Settings

Result = TypeVar("Result")
Emit = Callable[[Event], None]


class JobControl:
    """What a job is told while it runs: pause, resume, cancel, and edits from the next frame."""

    def __init__(self) -> None:
        self.paused = threading.Event()
        self.cancelled = threading.Event()
        self.live_session = None  # the LiveSession of a live job, for its quick controls
        self._pending: Settings | None = None
        self._lock = threading.Lock()

    def should_stop(self) -> bool:
        """Polled between frames: waits while paused; True once cancelled."""
        while self.paused.is_set() and not self.cancelled.is_set():
            time.sleep(0.05)
        return self.cancelled.is_set()

    def cancel(self) -> None:
        self.cancelled.set()
        self.paused.clear()

    def edit(self, settings: Settings) -> None:
        """New settings from the next frame on (a live session takes them at once)."""
        if self.live_session is not None:
            self.live_session.edit(settings)
        with self._lock:
            self._pending = settings

    def take_update(self) -> Settings | None:
        with self._lock:
            update, self._pending = self._pending, None
        return update


def run_job(work: Callable[[], Result], emit: Emit, *, where: str) -> tuple[str, Result | None]:
    """``work`` with its notices said as log lines: the final state (done, cancelled, error) and
    what it returned. Every failure becomes one :class:`Failed` event, a bug with the place it was
    raised and its traceback in the log."""
    from engine.modes import Interrupted

    try:
        with collecting_notices() as notices:
            result = work()
        for notice in notices:
            emit(Log(f"note: {notice}"))
        return "done", result
    except Interrupted as stopped:
        emit(Log(stopped.message))
        return "cancelled", None
    except DriftwaveError as error:
        message = str(error) if isinstance(error, ErrorGroup) else error.message
        emit(Failed(message, error.field or where, error.hint, error.field))
    except Exception as error:  # a bug: the engine keeps serving and the clients see where
        hint = "a bug in Driftwave: the engine log has the traceback"
        emit(Failed(f"{type(error).__name__}: {error}", raised_at(error), hint, traceback=traceback.format_exc()))
    return "error", None


def raised_at(error: BaseException) -> str:
    """``file:line in function`` of the innermost frame of ``error``'s traceback (a file of the
    project relative to it)."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "engine"
    innermost, path = frames[-1], Path(frames[-1].filename)
    try:
        path = path.resolve().relative_to(Path(__file__).resolve().parent.parent)
    except ValueError:
        pass
    return f"{path}:{innermost.lineno} in {innermost.name}"


def render_job(settings: Settings, resume: str | None, emit: Emit, control: JobControl):
    from engine.render import render

    return render(
        settings, resume=resume, on_event=emit, should_stop=control.should_stop, take_update=control.take_update
    )


def sweep_job(data: dict[str, Any], options: dict[str, Any], emit: Emit, control: JobControl):
    """A sweep of the settings ``data`` (the TUI's, as sent): ``options`` holds ``vary`` (a list of
    ``KEY=V1,V2``), ``zip``, ``resume`` (a sweep's timestring), ``workers``, ``address``,
    ``gpus_per_run`` and ``retries``. Cancelling stops every variant after its frame; a sweep
    cannot pause (its variants run in other processes). Returns the batch."""
    from engine.render import prepared
    from engine.sweep import RayOptions, find_batch, finish_batch, new_batch, run_batch
    from engine.variants import data_loader, parse_vary, sweep_variants

    varies = [parse_vary(text) for text in options.get("vary") or ()]
    if not varies:
        raise DriftwaveError("a sweep needs what to vary", field="sweep.vary", hint="e.g. seed=1..4")
    load = data_loader(data)
    variants = sweep_variants(load, [], varies, paired=bool(options.get("zip")), check=prepared, source="settings")
    resume = options.get("resume")
    batch = find_batch("sweep", variants, resume) if resume else new_batch("sweep", variants)
    ray_options = RayOptions(
        options.get("address"), options.get("workers"), options.get("gpus_per_run", 1.0), options.get("retries", 2)
    )
    run_batch(batch, ray_options, emit=emit, should_stop=control.cancelled.is_set)
    if not control.cancelled.is_set():
        finish_batch(batch, emit)
    return batch


def live_job(settings: Settings, options: dict[str, Any], emit: Emit, control: JobControl):
    """A live session in <outdir>/<batch>/live-<time>/ (recording, snapshots), the newest frame at
    latest.png there or in ``options["frames_dir"]``; with ``options["serve"]`` (a port) the picture
    goes to a browser page whose sound drives it, with ``options["osc"]`` OSC controls it. Ends after
    ``options["duration"]`` seconds, when cancelled, or when a file source ends. Returns its summary."""
    from engine.backends import load_backend
    from engine.live import LiveSession, record_session
    from engine.outputs import new_timestring

    backend = load_backend(settings.model)
    source = _live_source(settings, options)
    services = []
    try:
        timestring = f"live-{new_timestring()}"
        folder = Path(settings.batch.outdir).expanduser() / settings.batch.batch_name / timestring
        frames = Path(options.get("frames_dir") or folder)  # the newest frame, for the TUI and OBS
        for place in (folder, frames):
            place.mkdir(parents=True, exist_ok=True)
        session = control.live_session = LiveSession(settings, backend, source, frames_dir=frames)
        emit(RunStarted(str(folder), timestring, backend.name))
        emit(Log(f"live: {settings.image.W}x{settings.image.H} at up to {settings.live.target_fps:g} fps in {folder}"))
        served = options.get("serve")
        server = _page_server(session, int(served), folder, emit) if served is not None else None
        services += [server] if server is not None else []
        if options.get("osc") is not None:
            services.append(_osc(session, int(options["osc"]), folder, emit))
        session.on_frame = _reporter(emit, str(frames / "latest.png"), server)

        def run():
            return session.run(options.get("duration"), control.should_stop)

        record = options.get("record")
        summary = record_session(session, Path(record), run) if record else run()
        emit(Log(summary.line() + (f"; recorded {record}" if record else "")))
        return summary
    finally:
        control.live_session = None
        for service in services:
            service.close()
        source.close()


def _live_source(settings: Settings, options: dict[str, Any]):
    """The browser page's sound when serving, else the input, the file or the preset's track."""
    if options.get("serve") is not None:
        from audio.live import PushedSource

        live, audio = settings.live, settings.audio
        return PushedSource(audio.filters, live.target_fps, bpm=audio.bpm, jitter=live.jitter_ms / 1000)
    from engine.live import open_audio_source

    return open_audio_source(settings, audio_file=options.get("audio_file"), input_device=options.get("input_device"))


def _reporter(emit: Emit, latest: str, server) -> Callable:
    """A LiveSession's on_frame: a LiveFrame event, and the picture to the page when serving."""
    from engine.images import to_array

    def on_frame(status, image) -> None:
        shown = (status.frame, status.fps, status.latency_ms, status.audio, status.behind, status.problem)
        served = (server.latency_ms, server.url) if server is not None else (None, None)
        emit(LiveFrame(*shown, latest, *served))
        if server is not None:
            header = {"frame": status.frame, "fps": status.fps, "audio": status.audio, "problem": status.problem}
            server.publish(to_array(image), header | {"stamp": status.audio_stamp})

    return on_frame


def _osc(session, port: int, folder: Path, emit: Emit):
    from engine.osc import OscControl

    osc = OscControl(session, port, folder / "snapshots", lambda line: emit(Log(line)))
    emit(Log(f"OSC on 127.0.0.1:{osc.port} (/driftwave/var/NAME, /driftwave/freeze, ...)"))
    return osc


def _page_server(session, port: int, folder: Path, emit: Emit):
    from engine.serve import LiveServer, quick_control

    server = LiveServer(
        session.source,
        port=port,
        on_control=lambda message: quick_control(session, message, folder / "snapshots"),
        say=lambda line: emit(Log(line)),
    )
    server.start()
    emit(Log(f"live page: {server.url}  (from a laptop: ssh -L {server.port}:localhost:{server.port} host)"))
    return server
