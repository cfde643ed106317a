"""Batches of independent renders on Ray: a sweep's variants or a queue of presets, one Ray task
each, every variant an ordinary run folder ``<batch folder>/<variant>/`` that resumes on its own.

The batch folder is ``<outdir>/<batch_name>/<kind>-<timestring>/`` (of the first variant's
settings) and holds ``<kind>.json`` / ``<kind>.csv`` (variant -> parameters, folder, frames,
seconds, status), Ray's logs and, for a sweep, the contact sheet. A worker lost mid-variant is
retried by Ray and resumes from that variant's last complete frame; running the batch again
(``resume``) skips finished variants and resumes the rest.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.errors import DriftwaveError, collecting_notices
from engine.outputs import create_folder, new_timestring, write_bytes_atomically, written_frames
from engine.protocol import BatchProgress, BatchStarted, Done, Event, Log, Progress, RunStarted, VariantUpdate
from engine.seeds import pick_seed
from engine.settings import Settings
from engine.variants import Variant

FINISHED = ("done", "failed")


@dataclass
class VariantRecord:
    """What the batch knows of one variant; a row of ``<kind>.json`` and ``<kind>.csv``."""

    name: str
    params: dict[str, str]
    folder: str
    status: str = "pending"
    frames: int = 0
    total: int = 0
    seconds: float = 0.0
    attempts: int = 0
    error: str | None = None

    def update_event(self) -> VariantUpdate:
        fields = asdict(self)
        fields.pop("params")
        fields["frame"] = fields.pop("frames")
        return VariantUpdate(**fields)


@dataclass
class Batch:
    """A sweep or a queue: its folder, its variants (settings placed in the folder), its records."""

    kind: str
    root: Path
    timestring: str
    variants: list[Variant]
    records: dict[str, VariantRecord] = field(default_factory=dict)
    seed: int = 0  # what a variant's seed -1 becomes
    contact_sheet: Path | None = None

    @property
    def record_path(self) -> Path:
        return self.root / f"{self.kind}.json"

    def save(self) -> None:
        """``<kind>.json`` and ``<kind>.csv``, each written whole or not at all."""
        rows = [asdict(record) for record in self.records.values()]
        document = {"kind": self.kind, "timestring": self.timestring, "seed": self.seed, "variants": rows}
        if self.contact_sheet:
            document["contact_sheet"] = str(self.contact_sheet)
        write_bytes_atomically(self.record_path, (json.dumps(document, indent=1) + "\n").encode())
        keys = sorted({key for record in self.records.values() for key in record.params})
        table = io.StringIO()
        writer = csv.writer(table)
        writer.writerow(["variant", *keys, "status", "frames", "seconds", "attempts", "folder", "error"])
        for record in self.records.values():
            params = [record.params.get(key, "") for key in keys]
            outcome = [record.status, record.frames, f"{record.seconds:.1f}", record.attempts, record.folder]
            writer.writerow([record.name, *params, *outcome, record.error or ""])
        write_bytes_atomically(self.root / f"{self.kind}.csv", table.getvalue().encode())


def new_batch(kind: str, variants: list[Variant], timestring: str | None = None) -> Batch:
    """A new batch folder for ``variants`` under the first one's outdir and batch_name."""
    first = variants[0].settings.batch
    timestring = timestring or new_timestring()
    root = Path(first.outdir).expanduser() / first.batch_name / f"{kind}-{timestring}"
    while root.exists():  # two batches in one second
        timestring = str(int(timestring) + 1)
        root = root.with_name(f"{kind}-{timestring}")
    create_folder(root)
    seed = pick_seed()
    batch = Batch(kind, root, timestring, [_placed(variant, root, seed) for variant in variants], seed=seed)
    batch.records = {variant.name: _record(variant, root) for variant in batch.variants}
    batch.save()
    return batch


def find_batch(kind: str, variants: list[Variant], timestring: str) -> Batch:
    """The batch ``timestring`` to go on with; it must have the same variants."""
    first = variants[0].settings.batch
    root = Path(first.outdir).expanduser() / first.batch_name / f"{kind}-{timestring}"
    path = root / f"{kind}.json"
    if not path.exists():
        earlier = sorted(p.parent.name for p in root.parent.glob(f"{kind}-*/{kind}.json"))
        hint = f"{kind}s there: {', '.join(earlier)}" if earlier else f"no {kind} has run under {root.parent}"
        raise DriftwaveError(f"there is no {kind} {timestring} to resume in {root.parent}", hint=hint)
    document = json.loads(path.read_text())
    saved = {row["name"]: VariantRecord(**row) for row in document["variants"]}
    wanted = {variant.name: variant.params for variant in variants}
    if {name: record.params for name, record in saved.items()} != wanted:
        differ = sorted(set(saved) ^ set(wanted)) or sorted(saved)
        raise DriftwaveError(
            f"{kind} {timestring} has other variants than these ({', '.join(differ[:4])})",
            hint=f"give the same preset and --vary values as when it started, or drop --resume to start a new {kind}",
        )
    seed = document["seed"]
    batch = Batch(kind, root, timestring, [_placed(variant, root, seed) for variant in variants], saved, seed=seed)
    for record in batch.records.values():
        if record.status != "done" or not (root / record.name / "settings.toml").exists():
            batch.records[record.name] = replace(record, status="pending", error=None)
    batch.save()
    return batch


def _placed(variant: Variant, root: Path, seed: int) -> Variant:
    """The variant rendering into ``root/<its name>/``, an ordinary run folder; a random seed
    (-1) is the batch's ``seed``, so variants differ only in what is varied."""
    settings = variant.settings
    update: dict[str, Any] = {
        "batch": settings.batch.model_copy(update={"outdir": str(root.parent), "batch_name": root.name})
    }
    if settings.sampling.seed == -1:
        update["sampling"] = settings.sampling.model_copy(update={"seed": seed})
    return replace(variant, settings=settings.model_copy(update=update))


def _record(variant: Variant, root: Path) -> VariantRecord:
    return VariantRecord(variant.name, variant.params, str(root / variant.name), total=expected_frames(variant))


def expected_frames(variant: Variant) -> int:
    """How many frames the variant's animation writes (0 for stills: known once they start)."""
    from engine.render import prepared

    with collecting_notices():
        settings = prepared(variant.settings)[0]
    return 0 if settings.animation.animation_mode == "None" else settings.animation.max_frames


# -- a variant, in a Ray worker -------------------------------------------------------------------

_backend_cache: dict[str, Any] = {}  # one model per worker process, kept for its next variant


def render_variant(board, settings: Settings, name: str) -> dict[str, Any]:
    """Render (or resume) one variant in its run folder, posting progress to ``board``. A user
    error is returned as the variant's failure; a bug is raised (Ray reports it); a lost worker
    makes Ray run this again, which resumes from the last complete frame."""
    import ray

    from engine.cpu_tuning import tune_for_frames
    from engine.modes import Interrupted
    from engine.render import render

    tune_for_frames()  # a Ray worker is a process of its own
    if ray.get(board.should_stop.remote()):
        return {"status": "interrupted", "frames": 0}
    folder = Path(settings.batch.outdir) / settings.batch.batch_name / name
    resume = name if (folder / "settings.toml").exists() else None
    if resume is None and folder.exists():  # stopped before it had settings: nothing to keep
        _remove_empty_run(folder)
    started = time.monotonic()
    board.post.remote(name, {"started": True, "status": "running", "pid": os.getpid()})
    try:
        with collecting_notices() as notices:
            result = render(
                settings,
                backend=_backend(settings),
                resume=resume,
                timestring=None if resume else name,
                on_event=lambda event: _post(board, name, event),
                should_stop=_stop_poller(board),
            )
    except Interrupted:
        return {"status": "interrupted", "frames": len(written_frames(folder)), "seconds": time.monotonic() - started}
    except DriftwaveError as error:
        return {"status": "failed", "error": str(error), "frames": len(written_frames(folder))}
    for notice in notices:
        board.say.remote(name, notice)
    return {"status": "done", "frames": len(result.frames), "seconds": time.monotonic() - started}


def _backend(settings: Settings):
    from engine.backends import load_backend

    key = settings.model.model_dump_json()
    if key not in _backend_cache:
        _backend_cache.clear()
        _backend_cache[key] = load_backend(settings.model)
    return _backend_cache[key]


def _post(board, name: str, event: Event) -> None:
    if isinstance(event, Progress):
        board.post.remote(name, {"frames": event.frame, "total": event.total or 0})
    elif isinstance(event, RunStarted):
        board.post.remote(name, {"backend": event.backend})


def _stop_poller(board) -> Callable[[], bool]:
    import ray

    return lambda: ray.get(board.should_stop.remote())


def _remove_empty_run(folder: Path) -> None:
    if written_frames(folder):
        raise DriftwaveError(f"{folder} has frames but no settings.toml", hint="move it away and run the batch again")
    shutil.rmtree(folder)


# -- the driver -----------------------------------------------------------------------------------


@dataclass
class RayOptions:
    address: str | None = None  # None: a local runtime on this host
    workers: int | None = None  # local CPU workers (None: one per CPU, at most one per variant)
    gpus_per_run: float = 1.0  # 0: run on CPUs even where there are GPUs
    retries: int = 2  # tries after a lost worker


def run_batch(
    batch: Batch,
    options: RayOptions,
    *,
    emit: Callable[[Event], None] = lambda event: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Batch:
    """Every pending variant of ``batch`` as a Ray task; progress as events; the records saved as
    variants finish. ``should_stop`` asks the running variants to stop after their frame."""
    from engine.ray_runtime import Board, gpus_available, ray_runtime

    pending = [variant for variant in batch.variants if batch.records[variant.name].status not in FINISHED]
    emit(BatchStarted(str(batch.root), batch.timestring, batch.kind, [variant.name for variant in batch.variants]))
    for record in batch.records.values():
        emit(record.update_event())
    workers = options.workers or max(1, min(os.cpu_count() or 1, len(pending)))
    with ray_runtime(options.address, cpus=workers, logs=batch.root / "ray-logs") as ray:
        board = ray.remote(num_cpus=0)(Board).remote()
        on_gpu = options.gpus_per_run > 0 and gpus_available(ray) > 0
        resources = {"num_gpus": options.gpus_per_run} if on_gpu else {"num_cpus": 1}
        task = ray.remote(render_variant).options(max_retries=options.retries, **resources)
        refs = {task.remote(board, variant.settings, variant.name): variant.name for variant in pending}
        _Driver(batch, ray, board, refs, emit, should_stop).wait()
    return batch


class _Driver:
    """Waits for a batch's tasks, turning the board's posts into records and events."""

    def __init__(self, batch: Batch, ray, board, refs: dict, emit, should_stop) -> None:
        self.batch, self.ray, self.board, self.refs = batch, ray, board, refs
        self.emit, self.should_stop = emit, should_stop
        self.started, self.stopping = time.monotonic(), False
        self.shown: tuple[int, int, int] | None = None
        self.said: set[str] = set()
        self.frames_at_start = sum(record.frames for record in batch.records.values())

    def wait(self) -> None:
        try:
            while self.refs:
                finished, _ = self.ray.wait(list(self.refs), num_returns=len(self.refs), timeout=0.25)
                self._read_board()
                for ref in finished:
                    self._finish(self.refs.pop(ref), ref)
                self._progress()
                if not self.stopping and self.should_stop():
                    self.stopping = True
                    self.board.stop.remote()
                    self.emit(Log("stopping: each running variant finishes its frame"))
        except KeyboardInterrupt:  # asked twice: stop now
            for ref, name in self.refs.items():
                self.ray.cancel(ref, force=True)
                self.batch.records[name].status = "interrupted"
            raise
        finally:
            self.batch.save()

    def _read_board(self) -> None:
        posts, lines = self.ray.get(self.board.read.remote())
        for name, line in lines:
            if line not in self.said:  # variants mostly notice the same things: say each once
                self.said.add(line)
                self.emit(Log(f"{name}: {line}"))
        running = set(self.refs.values())
        for name, post in posts.items():
            if name not in running:  # its task has returned: the record holds its outcome
                continue
            record = self.batch.records[name]
            update = {key: post[key] for key in ("frames", "total", "attempts") if key in post}
            update["status"] = post.get("status", record.status)
            changed = any(getattr(record, key) != value for key, value in update.items())
            for key, value in update.items():
                setattr(record, key, value)
            if changed:
                self.emit(record.update_event())

    def _finish(self, name: str, ref) -> None:
        record = self.batch.records[name]
        try:
            outcome = self.ray.get(ref)
        except Exception as error:  # a bug in the variant, or its worker lost more often than retried
            outcome = {"status": "failed", "error": _reason(error)}
        record.status = outcome["status"]
        record.frames = outcome.get("frames", record.frames)
        record.seconds += outcome.get("seconds", 0.0)
        record.error = outcome.get("error")
        if record.status == "failed":
            self.emit(Log(f"{name} failed: {record.error}"))
        self.emit(record.update_event())
        self.batch.save()

    def _progress(self) -> None:
        records = self.batch.records.values()
        frames = sum(record.frames for record in records)
        total = sum(max(record.total, record.frames) for record in records)
        elapsed = time.monotonic() - self.started
        fps = (frames - self.frames_at_start) / elapsed if elapsed > 0 else 0.0
        eta = (total - frames) / fps if fps > 0 else None
        finished = sum(record.status in FINISHED for record in records)
        if (finished, frames, total) != self.shown:
            self.shown = (finished, frames, total)
            self.emit(BatchProgress(finished, len(self.batch.records), frames, total, fps, eta))


def _reason(error: Exception) -> str:
    """A task's failure in one line: the variant's own exception, or why its worker was lost."""
    cause = getattr(error, "cause", None)
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def finish_batch(batch: Batch, emit: Callable[[Event], None]) -> None:
    """After the variants: a sweep's contact sheet when every variant has frames; Done."""
    from engine.contact_sheet import write_contact_sheet

    outputs = [batch.record_path, batch.root / f"{batch.kind}.csv"]
    with_frames = [record for record in batch.records.values() if record.frames]
    if batch.kind == "sweep" and with_frames:
        batch.contact_sheet = write_contact_sheet(batch)
        batch.save()
        emit(Log(f"wrote {batch.contact_sheet}"))
        outputs.append(batch.contact_sheet)
    emit(Done([str(path) for path in outputs]))
