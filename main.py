"""Driftwave command line: `render`, `live`, `sweep`, `queue`, `schedule`, `prompts`, `values`, `inspect`,
`audio`, `settings`, `import`.

User errors print one message (field, place, fix) and exit with code 2; never a traceback.
Heavy libraries are imported inside the command that needs them.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from engine.cpu_tuning import tune_for_frames
from engine.errors import DriftwaveError, collecting_notices

PRESETS = Path(__file__).resolve().parent / "presets"


def main(argv: Sequence[str] | None = None) -> int:
    tune_for_frames()
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv) or ["tui"]
    args = parser.parse_args(words)
    args.command_line = words
    try:
        with collecting_notices() as notices:
            status = args.run(args)
    except DriftwaveError as error:
        _print_notices(notices)
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. piped into `head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0
    _print_notices(notices)
    return status


def build_parser() -> argparse.ArgumentParser:
    from engine.serve import DEFAULT_PORT

    parser = argparse.ArgumentParser(prog="main.py", description="Driftwave: music-synced Deforum-style animation.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    tui = commands.add_parser("tui", help="the terminal UI (the default): edit a preset while the engine renders")
    tui.add_argument("preset", nargs="?", help="preset file or name (default: presets/demo.toml)")
    tui.add_argument("--offline", action="store_true", help="edit only: do not start or attach to an engine")
    _add_overrides(tui)
    tui.set_defaults(run=run_tui)

    render = commands.add_parser("render", help="render a preset to frames and a video")
    render.add_argument("preset", help="preset file or name (see presets/)")
    render.add_argument("--resume", metavar="TIMESTRING", help="continue that run from its last complete frame")
    render.add_argument(
        "--fallback-preview",
        action="store_true",
        help="if the model cannot be loaded, render with the preview backend (motion only) and say so",
    )
    _add_overrides(render)
    render.set_defaults(run=run_render)

    live = commands.add_parser("live", help="render in real time from a microphone, line-in or a playing track")
    live.add_argument("preset", help="preset file or name (see presets/)")
    source = live.add_mutually_exclusive_group()
    source.add_argument("--input-device", metavar="N", help="audio input by number or name (main.py audio devices)")
    source.add_argument("--audio-file", metavar="F", help="play this track in real time instead of an input")
    source.add_argument(
        "--serve",
        nargs="?",
        const=DEFAULT_PORT,
        type=int,
        metavar="PORT",
        help="show the picture in a browser page on 127.0.0.1:PORT (8765), its microphone or file the sound",
    )
    live.add_argument("--osc", type=int, metavar="PORT", help="take [live] variables and quick controls over OSC")
    live.add_argument("--headless", action="store_true", help="no TUI: print the status (scripts, servers)")
    live.add_argument("--duration", type=float, metavar="SECONDS", help="end the session after this long")
    live.add_argument("--record", metavar="OUT.mp4", help="record the session with the audio it reacted to")
    live.add_argument("--frames-dir", metavar="DIR", help="keep the newest frame at DIR/latest.png (for OBS etc.)")
    _add_overrides(live)
    live.set_defaults(run=run_live)

    sweep = commands.add_parser("sweep", help="render variants of a preset (seeds, schedules...) as Ray tasks")
    sweep.add_argument("preset", help="preset file or name (see presets/)")
    sweep.add_argument(
        "--vary",
        action="append",
        required=True,
        metavar="KEY=V1,V2",
        help="a setting and its values: seed=1..16, strength=0.4..0.7:0.1, strength_schedule='0:(0.5)|0:(0.7)'",
    )
    sweep.add_argument("--zip", action="store_true", help="pair the lists (i-th values together) instead of crossing")
    _add_batch_options(sweep)
    sweep.set_defaults(run=run_sweep)

    queue = commands.add_parser("queue", help="render several presets one after another, or side by side on Ray")
    queue.add_argument("presets", nargs="+", metavar="PRESET", help="preset files or names, rendered in this order")
    _add_batch_options(queue)
    queue.set_defaults(run=run_queue)

    engine = commands.add_parser("engine", help="run the render engine process (the TUI starts it for you)")
    engine.add_argument("--socket", metavar="PATH", help="Unix socket to listen on (default: per-user runtime dir)")
    engine.add_argument(
        "--idle-exit",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="exit after this long with no client and no render (0: never)",
    )
    engine.set_defaults(run=run_engine)

    schedule = commands.add_parser("schedule", help="evaluate a schedule string, one value per frame")
    schedule.add_argument("text", help='the schedule, e.g. "0:(sin(t)), 100:(4)"')
    schedule.add_argument("--frames", type=int, default=120, help="number of frames (default 120)")
    schedule.add_argument("--fps", type=float, default=15.0, help="frames per second (default 15)")
    schedule.add_argument("--bpm", type=float, default=None, help="tempo for beat keyframes (8b)")
    schedule.add_argument(
        "--blend", choices=("tween", "hold"), default="tween", help="tween (default) or hold (Deforum)"
    )
    _add_audio_options(schedule)
    output = schedule.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print a JSON list")
    output.add_argument("--plot", metavar="PNG", help="write a plot of the curve instead")
    schedule.set_defaults(run=run_schedule)

    prompts = commands.add_parser("prompts", help="show the weighted prompts of one frame")
    prompts.add_argument("preset", help="preset file or name (see presets/)")
    prompts.add_argument("--frame", type=int, default=0, help="frame number (default 0)")
    prompts.add_argument(
        "--json",
        action="store_true",
        help='print {"positive": [[text, weight]...], "negative": [...], "loras": [[name, weight]...]}, '
        'and "schedule": the texts per step range, with A1111 prompt editing',
    )
    _add_overrides(prompts)
    prompts.set_defaults(run=run_prompts)

    values = commands.add_parser("values", help="each schedule's per-frame values as the render will use them")
    values.add_argument("preset", help="preset file or name (see presets/)")
    output = values.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help='print {"group.field": [value per frame], ...}')
    output.add_argument("--csv", action="store_true", help="print one row per frame (the run folder's values.csv)")
    values.add_argument("--frames", metavar="A:B", help="only frames A to B-1 (either end may be left out)")
    _add_overrides(values)
    values.set_defaults(run=run_values)

    inspect = commands.add_parser("inspect", help="validate a preset and summarise what it will render")
    inspect.add_argument("preset", help="preset file or name (see presets/)")
    inspect.add_argument("--plot", metavar="PNG", help="also plot every schedule that changes over time")
    _add_overrides(inspect)
    inspect.set_defaults(run=run_inspect)

    audio = commands.add_parser("audio", help="analyse a track, or list audio inputs")
    audio_commands = audio.add_subparsers(dest="audio_command", metavar="ACTION", required=True)
    analyze = audio_commands.add_parser("analyze", help="per-frame envelopes of a track")
    analyze.add_argument("file", help="wav, flac, ogg, mp3, m4a...")
    analyze.add_argument("--fps", type=float, default=15.0, help="frames per second (default 15)")
    analyze.add_argument("--frames", type=int, help="number of frames (default: the whole track)")
    _add_audio_options(analyze, file=False)
    formats = analyze.add_mutually_exclusive_group()
    formats.add_argument("--json", action="store_true", help='print {"fps": ..., "bpm": ..., "values": {name: [...]}}')
    formats.add_argument("--csv", action="store_true", help="print frame,seconds,name... rows")
    analyze.add_argument("--plot", metavar="PNG", help="also plot the envelopes with the beats marked")
    analyze.set_defaults(run=run_audio_analyze)
    devices = audio_commands.add_parser("devices", help="list audio inputs (microphones, line-in)")
    devices.set_defaults(run=run_audio_devices)

    settings = commands.add_parser("settings", help="list every setting with its default and meaning")
    settings.add_argument("group", nargs="?", help="only this section, e.g. motion")
    settings.set_defaults(run=run_settings)

    importer = commands.add_parser("import", help="convert a Deforum settings file into a preset")
    importer.add_argument("file", help="Deforum A1111 settings JSON or notebook *_settings.txt")
    importer.add_argument("-o", "--output", metavar="TOML", help="preset to write (default: print it)")
    importer.add_argument("--force", action="store_true", help="overwrite an existing output file")
    importer.set_defaults(run=run_import)
    return parser


def _add_audio_options(parser: argparse.ArgumentParser, *, file: bool = True) -> None:
    if file:
        parser.add_argument("--audio", metavar="FILE", help="a track whose envelopes the schedule may use")
    parser.add_argument(
        "--filter",
        dest="filters",
        action="append",
        default=[],
        metavar="NAME:CENTER:WIDTH[:ORDER]",
        help="a Butterworth bandpass, e.g. fLo:105:65 (Hz); its envelope is the variable NAME",
    )
    parser.add_argument("--offset", type=float, default=0.0, help="seconds into the track where frame 0 starts")


def _add_batch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ray", metavar="ADDRESS", help="a Ray cluster's head (host:port, or auto); default: this host"
    )
    parser.add_argument("--workers", type=int, metavar="N", help="variants at once on this host's CPUs (no GPU)")
    parser.add_argument("--gpus-per-run", type=float, default=1.0, metavar="G", help="GPUs per variant (0: CPUs)")
    parser.add_argument("--retries", type=int, default=2, metavar="N", help="tries again after a lost worker")
    parser.add_argument("--resume", metavar="TIMESTRING", help="go on with that batch: finished variants are skipped")
    _add_overrides(parser)


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set max_frames=60 --set zoom=0:(1.02)",
    )


@contextmanager
def stop_on_interrupt() -> Iterator[Callable[[], bool]]:
    """The first Ctrl-C asks the render to stop after the frame it is on (a flag the loop reads,
    so no library can swallow it); a second one stops at once."""
    requested = threading.Event()

    def on_interrupt(number, frame) -> None:
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()
        print("\nstopping after this frame (Ctrl-C again to stop now)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield requested.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


# -- commands -------------------------------------------------------------------------------


def run_render(args: argparse.Namespace) -> int:
    from engine.backends import ModelLoadError, load_backend
    from engine.modes import Interrupted
    from engine.render import render

    preset = _load(args.preset, args.overrides)
    settings = preset.settings
    try:
        backend = load_backend(settings.model)
    except ModelLoadError as error:
        if not args.fallback_preview:
            raise
        print(
            f"note: {error.message}; rendering with the preview backend instead (motion only, no diffusion)",
            file=sys.stderr,
        )
        settings = settings.model_copy(update={"model": settings.model.model_copy(update={"backend": "preview"})})
        backend = load_backend(settings.model)
    progress = ProgressLine()
    try:
        with stop_on_interrupt() as stop_requested:
            result = render(
                settings, backend=backend, resume=args.resume, on_event=progress, should_stop=stop_requested
            )
    except (KeyboardInterrupt, Interrupted):
        progress.finish()
        timestring = progress.timestring or "<timestring>"
        print(
            f"interrupted; finished frames are kept. Resume with:\n  main.py render {args.preset} "
            f"--resume {timestring}",
            file=sys.stderr,
        )
        return 130
    except DriftwaveError as error:  # e.g. a full disk: once the run has begun, it can go on later
        progress.finish()
        if progress.timestring:
            resume = f"then go on with: main.py render {args.preset} --resume {progress.timestring}"
            error.hint = f"{error.hint}\n  {resume}" if error.hint else resume
        raise
    progress.finish()
    print(f"{len(result.frames)} frames in {result.folder}")
    if result.video:
        print(f"video: {result.video}")
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    from engine.render import prepared
    from engine.variants import parse_vary, preset_loader, sweep_variants

    varies = [parse_vary(text) for text in args.vary]
    path = _preset_path(args.preset)
    variants = sweep_variants(
        preset_loader(path), args.overrides, varies, paired=args.zip, check=prepared, source=f"preset {path.name}"
    )
    return _run_batch("sweep", variants, args)


def run_queue(args: argparse.Namespace) -> int:
    from engine.render import prepared
    from engine.variants import queue_variants

    variants = queue_variants([_preset_path(name) for name in args.presets], args.overrides, check=prepared)
    return _run_batch("queue", variants, args)


def _run_batch(kind: str, variants, args: argparse.Namespace) -> int:
    """Every variant validated already: the batch folder, the Ray tasks, the results."""
    from engine.sweep import RayOptions, find_batch, finish_batch, new_batch, run_batch

    batch = find_batch(kind, variants, args.resume) if args.resume else new_batch(kind, variants)
    options = RayOptions(args.ray, args.workers, args.gpus_per_run, args.retries)
    progress = BatchProgressLine()
    resume = f"main.py {_without_resume(args.command_line)} --resume {batch.timestring}"
    try:
        with stop_on_interrupt() as stop_requested:
            run_batch(batch, options, emit=progress, should_stop=stop_requested)
    except KeyboardInterrupt:
        progress.finish()
        print(f"stopped; finished frames are kept. Go on with:\n  {resume}", file=sys.stderr)
        return 130
    progress.finish()
    records = list(batch.records.values())
    if any(record.status == "interrupted" for record in records):
        print(f"stopped; finished frames are kept. Go on with:\n  {resume}", file=sys.stderr)
        return 130
    finish_batch(batch, progress)
    progress.finish()
    for record in records:
        print(f"{record.status:>6}  {record.frames:5d} frames  {record.seconds:7.1f} s  {record.folder}")
        if record.error:
            print(f"        {record.error}")
    print(f"{kind}: {batch.record_path}" + (f"\ncontact sheet: {batch.contact_sheet}" if batch.contact_sheet else ""))
    return 1 if any(record.status == "failed" for record in records) else 0


def _without_resume(argv: list[str]) -> str:
    import shlex

    kept, skip = [], False
    for word in argv:
        if skip or word == "--resume" or word.startswith("--resume="):
            skip = word == "--resume" and not skip
            continue
        kept.append(word)
    return shlex.join(kept)


def run_tui(args: argparse.Namespace) -> int:
    if not sys.stdout.isatty():
        raise DriftwaveError(
            "the TUI needs a terminal",
            hint="run it in a terminal (over SSH: ssh -t host); main.py --help lists the other commands",
        )
    from tui.terminal import start_probe

    start_probe()  # overlaps the terminal's answers with importing Textual
    from tui.app import make_app

    app = make_app(_preset_path(args.preset or "demo"), tuple(args.overrides), connect=not args.offline)
    app.run()
    return app.return_code or 0


def run_live(args: argparse.Namespace) -> int:
    if not args.headless:
        return _live_tui(args)
    from engine.jobs import JobControl, live_job, run_job
    from engine.protocol import Failed

    settings = _load(args.preset, args.overrides).settings
    options = {
        "audio_file": args.audio_file,
        "input_device": args.input_device,
        "record": args.record,
        "duration": args.duration,
        "frames_dir": args.frames_dir,
        "serve": args.serve,
        "osc": args.osc,
    }
    control, printer = JobControl(), LiveStatusLine()
    previous = signal.signal(signal.SIGINT, lambda *_: control.cancel())  # Ctrl-C ends the session cleanly
    try:
        state, summary = run_job(lambda: live_job(settings, options, printer, control), printer, where="live")
    finally:
        signal.signal(signal.SIGINT, previous)
    printer.finish()
    if state == "error":
        failure = printer.failure or Failed("the live session stopped")
        if failure.traceback:
            print(failure.traceback, file=sys.stderr)
        raise DriftwaveError(failure.message, field=failure.field, hint=failure.hint)
    print(summary.line())
    if args.record:
        print(f"recorded: {args.record}")
    return 0


def _live_tui(args: argparse.Namespace) -> int:
    """The TUI on its Live tab; the engine runs the session (a dropped connection does not stop it)."""
    if not sys.stdout.isatty():
        raise DriftwaveError("the live screen needs a terminal", hint="run it in a terminal, or add --headless")
    from tui.terminal import start_probe

    start_probe()
    from tui.app import make_app

    options = {
        "audio_file": str(Path(args.audio_file).resolve()) if args.audio_file else None,
        "input_device": args.input_device,
        "record": str(Path(args.record).resolve()) if args.record else None,
        "duration": args.duration,
        "frames_dir": str(Path(args.frames_dir).resolve()) if args.frames_dir else None,
        "serve": args.serve,
        "osc": args.osc,
    }
    app = make_app(_preset_path(args.preset), tuple(args.overrides), live=options)
    app.run()
    return app.return_code or 0


class LiveStatusLine:
    """A live job's events on the terminal: one status line a second (frame, fps, latency), what
    went wrong once per problem, the log; the failure kept for the exit."""

    def __init__(self) -> None:
        self.shown_at, self.problems = 0.0, set()
        self.failure = None

    def __call__(self, event) -> None:
        import time

        from engine.protocol import Failed, LiveFrame, Log

        if isinstance(event, LiveFrame):
            if event.problem and event.problem not in self.problems:
                self.problems.add(event.problem)
                print(f"\nnote: {event.problem}", file=sys.stderr)
            if time.monotonic() - self.shown_at >= 1.0:
                self.shown_at = time.monotonic()
                line = f"frame {event.frame:6d}  {event.fps:5.1f} fps  audio to frame {event.latency_ms:4.0f} ms"
                if event.shown_latency_ms is not None:
                    line += f"  to the page {event.shown_latency_ms:4.0f} ms"
                print(f"\r{line}", end="", file=sys.stderr, flush=True)
        elif isinstance(event, Log):
            print(f"\n{event.message}", file=sys.stderr)
        elif isinstance(event, Failed):
            self.failure = event

    def finish(self) -> None:
        print(file=sys.stderr)


def run_engine(args: argparse.Namespace) -> int:
    from engine.server import run_engine as serve

    return serve(Path(args.socket) if args.socket else None, idle_exit=args.idle_exit)


class BatchProgressLine:
    """A batch's events on the terminal: one aggregate bar (variants done, frames, ETA), what
    each variant logs, a line when a variant ends."""

    def __init__(self) -> None:
        self.line = ProgressLine()

    def __call__(self, event) -> None:
        from engine.protocol import BatchProgress, BatchStarted, Log, Progress, VariantUpdate

        if isinstance(event, BatchStarted):
            self.line.say(f"{event.kind} of {len(event.variants)} variants in {event.folder}")
        elif isinstance(event, Log):
            self.line.say(event.message)
        elif isinstance(event, VariantUpdate) and event.status in ("done", "failed") and event.seconds:
            self.line.say(f"{event.name}: {event.status}, {event.frame} frames in {event.seconds:.1f} s")
        elif isinstance(event, BatchProgress) and event.total:
            self.line.label = f"variants {event.finished}/{event.variants}  frames"
            self.line(Progress(event.frames, event.total, event.fps, event.eta_s))

    def finish(self) -> None:
        self.line.finish()


class ProgressLine:
    """Prints render events: a progress bar on a terminal, a line now and then otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.timestring: str | None = None
        self.last = 0.0
        self.label = "frame"

    def __call__(self, event) -> None:
        import time

        from engine.protocol import Log, Progress, RunStarted

        if isinstance(event, RunStarted):
            self.timestring = event.timestring
            self.say(f"rendering to {event.folder} with {event.backend}")
        elif isinstance(event, Log):
            self.say(event.message)
        elif isinstance(event, Progress):
            width = 30
            filled = int(width * event.frame / event.total)
            eta = int(event.eta_s or 0)
            line = (
                f"{self.label} {event.frame}/{event.total} [{'#' * filled}{'.' * (width - filled)}]"
                f" {event.fps:.2f} it/s ETA {eta // 60}:{eta % 60:02d}"
            )
            if self.tty:
                print(f"\r{line}", end="", file=sys.stderr, flush=True)
            elif time.monotonic() - self.last > 5 or event.frame == event.total:
                print(line, file=sys.stderr)
                self.last = time.monotonic()

    def say(self, message: str) -> None:
        self.finish()
        print(message, file=sys.stderr)

    def finish(self) -> None:
        if self.tty:
            print(file=sys.stderr)


def run_schedule(args: argparse.Namespace) -> int:
    from engine.schedule import Timeline, compile_schedule

    if args.frames < 1:
        raise DriftwaveError(f"--frames {args.frames} is not a frame count", hint="use 1 or more")
    if args.fps <= 0:
        raise DriftwaveError(f"--fps {args.fps:g} is not a frame rate", hint="use a positive number, e.g. 15")
    variables, bpm = {}, args.bpm
    if args.audio:
        analysis = _analyze(args.audio, args.filters, args.offset, args.fps, args.frames, bpm)
        variables, bpm = analysis.values | {"bpm": analysis.bpm or 0.0}, analysis.bpm
    timeline = Timeline(args.frames, args.fps, bpm)
    schedule = compile_schedule(args.text, timeline, blend=args.blend, field="schedule", names=set(variables))
    values = schedule.evaluate(variables)
    if args.plot:
        from engine.plots import plot_curves

        keys = list(schedule.positions)
        path = plot_curves([("value", values, keys)], args.plot, fps=args.fps, title=args.text)
        print(f"wrote {path}")
    elif args.json:
        print(json.dumps([float(v) for v in values]))
    else:
        sys.stdout.write("".join(f"{v:.10g}\n" for v in values))
    return 0


def run_prompts(args: argparse.Namespace) -> int:
    from engine.plan import compile_run

    preset = _load(args.preset, args.overrides)
    plan = compile_run(preset.settings)
    frame = args.frame
    if not 0 <= frame < plan.timeline.frames:
        raise DriftwaveError(
            f"--frame {frame} is outside the animation", hint=f"frames run from 0 to {plan.timeline.frames - 1}"
        )
    result = plan.prompts.at(frame)
    if args.json:
        print(json.dumps(result.as_json(_steps_counted(plan, frame)), ensure_ascii=False))
        return 0
    print(f"frame {frame} ({frame / plan.timeline.fps:.2f} s)")
    for side, entries in (("positive", result.positive), ("negative", result.negative)):
        print(f"{side}:")
        for sub, weight in entries:
            print(f"  {weight:7.3f}  {sub.shown(result.scope)}")
            emphasis = [(text, w) for text, w in result.emphasis(sub) if w != 1.0]
            if emphasis:
                print("           emphasis: " + ", ".join(f"{text.strip()!r}×{w:.3g}" for text, w in emphasis))
        if not entries:
            print("  (none)")
    return 0


def _steps_counted(plan, frame: int) -> int:
    """The steps A1111 schedules prompt editing over at ``frame``: the frame's steps, twice for a
    second-order sampler (as the render's request has them)."""
    from engine.a1111 import total_steps

    params = plan.frame(frame)
    return total_steps(params.steps, params.sampler)


def run_values(args: argparse.Namespace) -> int:
    from engine.frame_values import as_csv, as_json, values_table
    from engine.plan import compile_run

    plan = compile_run(_load(args.preset, args.overrides).settings)
    start, stop = _frame_range(args.frames, plan.timeline.frames)
    table = values_table(plan, start, stop)
    if args.json:
        print(as_json(table))
    elif args.csv:
        sys.stdout.write(as_csv(table, start))
    else:
        for path, curve in table.items():
            print(f"{path:34s} " + " ".join(f"{value:.6g}" for value in curve[:8]) + (" ..." if len(curve) > 8 else ""))
    return 0


def _frame_range(text: str | None, frames: int) -> tuple[int, int]:
    """``A:B`` -> (A, B) within the animation; either end may be left out."""
    if not text:
        return 0, frames
    first, colon, last = text.partition(":")
    try:
        start = int(first) if first.strip() else 0
        stop = int(last) if colon and last.strip() else (frames if colon else start + 1)
    except ValueError:
        raise DriftwaveError(f"--frames {text!r} is not a range", hint="write A:B, e.g. --frames 0:48") from None
    if not 0 <= start < stop <= frames:
        raise DriftwaveError(
            f"--frames {text} is outside the animation", hint=f"frames run from 0 to {frames - 1} (B is exclusive)"
        )
    return start, stop


def run_inspect(args: argparse.Namespace) -> int:
    import numpy as np

    from engine.plan import compile_run, interpolation_length, switched_off

    preset = _load(args.preset, args.overrides)
    plan = compile_run(preset.settings)
    if plan.settings.animation.animation_mode == "Interpolation":
        frames = interpolation_length(plan.settings, plan)
        plan = compile_run(
            preset.settings.model_copy(
                update={"animation": preset.settings.animation.model_copy(update={"max_frames": frames})}
            )
        )
    settings, timeline = plan.settings, plan.timeline
    off = switched_off(settings)
    print(f"preset {preset.path}")
    print(
        f"  {settings.animation.animation_mode}, {timeline.frames} frames at {timeline.fps:g} fps "
        f"({timeline.frames / timeline.fps:.1f} s), {settings.image.W}x{settings.image.H}, "
        f"{settings.model.backend} backend, model {settings.model.model}"
    )
    print(f"  prompts: {len(plan.prompts.keys)} keyed, {len(plan.prompts.distinct_texts())} distinct texts to encode")
    for key in plan.prompts.keys:
        print(f"    {key.position:6.1f}  {key.scene.source.strip()[:90]}")
    moving = [(path, values) for path, values in plan.values.items() if np.ptp(values) > 0 and path not in off]
    print(f"  schedules: {len(plan.values)} compiled, {len(moving)} change over time")
    for path, values in moving:
        print(f"    {path:34s} {values.min():10.4g} .. {values.max():<10.4g}")
    if args.plot:
        from engine.plots import plot_curves

        curves = [(path.split(".")[-1], values, list(plan.schedules[path].positions)) for path, values in moving]
        path = plot_curves(curves, args.plot, fps=timeline.fps, title=f"{preset.path.name}: schedules that move")
        print(f"  wrote {path}")
    return 0


def run_audio_analyze(args: argparse.Namespace) -> int:
    from audio.load import track_seconds

    frames = args.frames
    if frames is None:
        frames = max(int((track_seconds(args.file, field="file") - args.offset) * args.fps), 1)
    analysis = _analyze(args.file, args.filters, args.offset, args.fps, frames, None)
    names = list(analysis.values)
    if args.json:
        print(
            json.dumps(
                {
                    "fps": args.fps,
                    "bpm": analysis.bpm,
                    "beats": analysis.beat_frames,
                    "values": {name: [round(float(v), 6) for v in analysis.values[name]] for name in names},
                }
            )
        )
    elif args.csv:
        print(",".join(["frame", "seconds", *names]))
        for frame in range(frames):
            row = [str(frame), f"{frame / args.fps:.4f}", *(f"{analysis.values[n][frame]:.6f}" for n in names)]
            print(",".join(row))
    else:
        print(
            f"{Path(args.file).name}: {frames} frames at {args.fps:g} fps, tempo {analysis.bpm or 0:.1f} BPM, "
            f"{len(analysis.beat_frames)} beats"
        )
        print("frame " + " ".join(f"{n:>7s}" for n in names))
        for frame in range(frames):
            print(f"{frame:5d} " + " ".join(f"{analysis.values[n][frame]:7.3f}" for n in names))
    if args.plot:
        from engine.plots import plot_curves

        curves = [(name, analysis.values[name], analysis.beat_frames) for name in names]
        path = plot_curves(curves, args.plot, fps=args.fps, title=Path(args.file).name, marks="beats")
        print(f"wrote {path}", file=sys.stderr)
    return 0


def run_audio_devices(args: argparse.Namespace) -> int:
    from audio.live import input_devices

    devices = input_devices()
    if not devices:
        print("no audio inputs found (no sound card or microphone); live mode can play a file instead (--audio-file)")
    for device in devices:
        print(f"{device.index:3d}  {device.name}  ({device.channels} ch, {device.rate:g} Hz)")
    return 0


def _analyze(path: str, filter_specs: list[str], offset: float, fps: float, frames: int, bpm: float | None):
    from audio.envelopes import analyze_file
    from engine.presets import settings_from_data

    filters = [_parse_filter(spec) for spec in filter_specs]
    data = {"audio": {"file": path, "offset": offset, "bpm": bpm or 0.0, "filters": filters}}
    settings = settings_from_data(data)
    return analyze_file(path, settings.audio, frames, fps, field="file")  # cached: each track analysed once


def _parse_filter(spec: str) -> dict:
    parts = spec.split(":")
    if len(parts) not in (3, 4):
        raise DriftwaveError(f"--filter {spec!r} is not NAME:CENTER:WIDTH[:ORDER]", hint="e.g. --filter fLo:105:65")
    try:
        numbers = [float(p) for p in parts[1:]]
    except ValueError:
        raise DriftwaveError(
            f"--filter {spec!r}: centre, width and order are numbers (Hz)", hint="e.g. --filter fHi:900:600:5"
        ) from None
    spec_dict = {"name": parts[0], "f_center": numbers[0], "f_width": numbers[1]}
    if len(numbers) == 3:
        spec_dict["order"] = int(numbers[2])
    return spec_dict


def run_settings(args: argparse.Namespace) -> int:
    from engine.settings import GROUPS, Settings

    defaults = Settings()
    groups = [args.group] if args.group else list(GROUPS)
    for group in groups:
        if group not in GROUPS:
            raise DriftwaveError(f"unknown section {group!r}", hint=f"sections: {', '.join(GROUPS)}")
        print(f"[{group}]")
        for name, info in GROUPS[group].model_fields.items():
            value = getattr(getattr(defaults, group), name)
            print(f"  {name} = {json.dumps(value) if not isinstance(value, list) else value}")
            if info.description:
                print(f"      {info.description}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from datetime import date

    import tomlkit

    from engine.deforum import import_deforum
    from engine.presets import save_preset, to_document

    result = import_deforum(args.file)
    header = (
        f"Imported from {Path(args.file).name} (Deforum {result.kind}) by Driftwave on {date.today()}.\n"
        f"{result.keys} Deforum keys set {len(result.mapped)} settings; the rest are Deforum's defaults.\n"
        'Schedules use blend = "hold" and prompts prompt_syntax = "a1111", as Deforum rendered them.'
        + "".join(f"\n{line}." for line in result.provenance)
    )
    options = {"include": result.mapped, "header": header, "comments": result.comments}
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not args.output:
        sys.stdout.write(tomlkit.dumps(to_document(result.settings, **options)))
        return 0
    output = Path(args.output)
    if output.exists() and not args.force:
        raise DriftwaveError(f"{output} already exists", hint="choose another name or add --force to overwrite it")
    save_preset(result.settings, output, **options)
    print(
        f"wrote {output}: {result.keys} Deforum keys read, {len(result.mapped)} settings set, "
        f"{len(result.warnings)} warnings"
    )
    return 0


# -- helpers --------------------------------------------------------------------------------


def _load(name: str, overrides: Sequence[str]):
    from engine.presets import load_preset

    return load_preset(_preset_path(name), overrides)


def _preset_path(name: str) -> Path:
    path = Path(name)
    if not path.exists() and (PRESETS / f"{name}.toml").exists():
        path = PRESETS / f"{name}.toml"
    return path


def _print_notices(notices: list[str]) -> None:
    for notice in dict.fromkeys(notices):  # a batch's variants notice the same things
        print(f"note: {notice}", file=sys.stderr)


def console() -> None:
    """Entry point of the installed ``driftwave`` command."""
    sys.exit(main())


if __name__ == "__main__":
    console()
