"""Sweeps and queues on a real local Ray runtime (2 CPUs): variants as run folders, a killed
worker retried and resumed, finished variants skipped, a stop resumed, the contact sheet, and
bad input stopped before any task starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, run_cli
from test_engine_server import (
    Client,
    _close_clients,  # noqa: F401 (an autouse fixture: every Client is closed)
    finished,
    job,
    start_engine,
)

from engine.backends import load_backend
from engine.errors import DriftwaveError, SettingsError, collecting_notices
from engine.outputs import written_frames
from engine.presets import load_preset
from engine.protocol import BatchProgress, BatchStarted, VariantUpdate
from engine.render import prepared, render
from engine.settings import ModelSettings
from engine.sweep import RayOptions, find_batch, finish_batch, new_batch, run_batch
from engine.variants import combine, parse_vary, preset_loader, queue_variants, sweep_variants, variant_name

PRESET = """
[animation]
animation_mode = "2D"
max_frames = {frames}
fps = 12

[image]
W = {width}
H = {height}

[model]
backend = "{backend}"

[sampling]
seed = 7
steps = 4

[motion]
translation_x = "0:(3)"
zoom = "0:(1.02)"

[batch]
outdir = "{outdir}"
batch_name = "study"

[prompts]
0 = "a lighthouse in a storm"
"""


def write_preset(folder: Path, *, frames: int = 4, backend: str = "preview", size=(64, 64)) -> Path:
    path = folder / "study.toml"
    width, height = size
    text = PRESET.format(frames=frames, width=width, height=height, backend=backend, outdir=folder / "out")
    path.write_text(text)
    return path


def variants_of(preset: Path, *varies: str, paired: bool = False, overrides=()):
    with collecting_notices():
        return sweep_variants(
            preset_loader(preset),
            list(overrides),
            [parse_vary(v) for v in varies],
            paired=paired,
            check=prepared,
            source=f"preset {preset.name}",
        )


def read_frames(folder: str | Path) -> list[np.ndarray]:
    return [cv2.imread(str(path), cv2.IMREAD_UNCHANGED) for path in written_frames(Path(folder))]


def video_info(path: Path) -> tuple[int, int, int]:
    """(width, height, frames) of a video, counted by decoding it."""
    capture = cv2.VideoCapture(str(path))
    frames, size = 0, None
    while True:
        ok, picture = capture.read()
        if not ok:
            break
        frames, size = frames + 1, picture.shape[1::-1]
    capture.release()
    return (*size, frames)


# -- variants, without Ray ---------------------------------------------------------------------


def test_vary_lists_ranges_and_schedules():
    assert parse_vary("seed=1..4").values == ("1", "2", "3", "4")
    assert parse_vary("strength=0.4..0.7:0.1").values == ("0.4", "0.5", "0.6", "0.7")
    assert parse_vary("steps=10, 20").values == ("10", "20")
    assert parse_vary("strength_schedule=0:(0.5), 10:(0.6)|0:(0.7)").values == ("0:(0.5), 10:(0.6)", "0:(0.7)")


def test_the_cross_product_and_zip_pairs():
    seeds, steps = parse_vary("seed=1,2"), parse_vary("steps=10,20")
    assert combine([seeds, steps], paired=False) == [
        {"seed": "1", "steps": "10"},
        {"seed": "1", "steps": "20"},
        {"seed": "2", "steps": "10"},
        {"seed": "2", "steps": "20"},
    ]
    assert combine([seeds, steps], paired=True) == [{"seed": "1", "steps": "10"}, {"seed": "2", "steps": "20"}]
    with pytest.raises(SettingsError, match="seed has 2, steps has 3"):
        combine([seeds, parse_vary("steps=1,2,3")], paired=True)


def test_variant_names_are_ordered_and_safe_for_a_shell():
    assert (
        variant_name(3, 2, {"seed": "3", "motion.strength_schedule": "0:(0.6)"}) == "03_seed-3_strength_schedule-0_0.6"
    )


@pytest.mark.parametrize(
    ("vary", "says"),
    [
        ("nosuch=1,2", "unknown setting 'nosuch'"),
        ("seed=1,abc", "--vary seed=abc"),
        ("strength_schedule=0:(0.5)|0:(0.7", "--vary strength_schedule=0:(0.7"),
        ("W=64,-3", "--vary W=-3"),
        ("seed=1", "image.H: preset study.toml"),
        ("seed=5..1", "is empty"),
    ],
)
def test_a_bad_key_or_value_names_it_before_anything_runs(tmp_path, vary, says):
    preset = write_preset(tmp_path)
    if vary == "seed=1":  # the preset itself is wrong: said once, of the preset
        preset.write_text(preset.read_text().replace("H = 64", "H = 48"))
    with pytest.raises(DriftwaveError) as caught:
        variants_of(preset, vary)
    assert says in str(caught.value)


def test_the_cli_stops_on_a_bad_value_before_any_task_or_folder(tmp_path):
    preset = write_preset(tmp_path)
    result = run_cli("sweep", str(preset), "--vary", "seed=1,2", "--vary", "zoom=0:(1.0)|0:(1.0+", timeout=120)
    assert result.returncode == 2, result.stderr
    assert "motion.zoom" in result.stderr and "--vary zoom=0:(1.0+" in result.stderr
    assert not (tmp_path / "out").exists()


def test_an_unreachable_ray_address_says_so_in_one_line(tmp_path):
    preset = write_preset(tmp_path)
    result = run_cli("sweep", str(preset), "--vary", "seed=1,2", "--ray", "127.0.0.1:9", timeout=120)
    assert result.returncode == 2
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error == [error[0]] and "127.0.0.1:9 cannot be reached" in error[0], result.stderr


# -- on Ray ------------------------------------------------------------------------------------


def test_a_four_variant_sweep_makes_four_runs_records_and_a_contact_sheet(tmp_path):
    preset = write_preset(tmp_path, size=(96, 64))
    variants = variants_of(preset, "seed=1,2", "max_frames=3,5")
    batch = new_batch("sweep", variants)
    events = []
    run_batch(batch, RayOptions(workers=2), emit=events.append)
    finish_batch(batch, events.append)

    runs = sorted(path for path in batch.root.iterdir() if (path / "settings.toml").exists())
    assert [run.name for run in runs] == [variant.name for variant in variants]
    for run, variant in zip(runs, variants, strict=True):
        saved = load_preset(run / "settings.toml").settings
        assert saved.sampling.seed == int(variant.params["seed"])
        assert saved.animation.max_frames == int(variant.params["max_frames"])
        assert len(written_frames(run)) == saved.animation.max_frames
        assert (run / "video.mp4").exists()
    records = json.loads((batch.root / "sweep.json").read_text())["variants"]
    assert [(row["status"], row["frames"], row["params"]) for row in records] == [
        ("done", int(variant.params["max_frames"]), variant.params) for variant in variants
    ]
    assert (batch.root / "sweep.csv").read_text().splitlines()[0].startswith("variant,max_frames,seed,status")
    assert list((batch.root / "ray-logs").glob("raylet*"))  # Ray's logs are kept with the batch

    assert video_info(batch.contact_sheet) == (2 * 96, 2 * 64, 5)  # a 2x2 grid, as long as the longest
    started = [event for event in events if isinstance(event, BatchStarted)]
    assert started[0].variants == [variant.name for variant in variants]
    last = [event for event in events if isinstance(event, BatchProgress)][-1]
    assert (last.finished, last.variants, last.frames, last.total) == (4, 4, 16, 16)

    again = []  # the same sweep once more: nothing is rendered again
    before = {run.name: [path.stat().st_mtime_ns for path in written_frames(run)] for run in runs}
    run_batch(find_batch("sweep", variants, batch.timestring), RayOptions(workers=2), emit=again.append)
    assert {run.name: [path.stat().st_mtime_ns for path in written_frames(run)] for run in runs} == before
    assert all(event.status == "done" and event.attempts == 1 for event in again if isinstance(event, VariantUpdate))


def test_a_stopped_sweep_resumes_to_the_frames_of_an_uninterrupted_one(tmp_path):
    preset = write_preset(tmp_path, frames=150)  # long enough to be stopped on its way
    variants = variants_of(preset, "seed=1,2")
    batch = new_batch("sweep", variants)
    seen = []

    def stop_after_frames() -> bool:
        return any(isinstance(event, VariantUpdate) and event.frame >= 2 for event in seen)

    run_batch(batch, RayOptions(workers=1), emit=seen.append, should_stop=stop_after_frames)
    statuses = {record.name: record.status for record in batch.records.values()}
    assert "interrupted" in statuses.values() and "done" not in statuses.values()

    resumed = find_batch("sweep", variants, batch.timestring)
    run_batch(resumed, RayOptions(workers=2))
    assert all(record.status == "done" for record in resumed.records.values())
    for variant in resumed.variants:
        whole = render(_elsewhere(variant.settings, tmp_path / "whole"))
        assert _equal(read_frames(resumed.root / variant.name), read_frames(whole.folder))


def test_a_killed_worker_is_retried_and_its_variant_resumes_to_the_same_frames(tmp_path):
    preset = write_preset(tmp_path, frames=24, backend="tiny", size=(64, 64))
    variants = variants_of(preset, "seed=3")
    batch = new_batch("sweep", variants)
    killed = []

    def kill_the_first_variants_worker(event) -> None:
        if isinstance(event, VariantUpdate) and event.name == variants[0].name and event.frame >= 2 and not killed:
            killed.extend(_kill_workers("ray::render_variant"))

    run_batch(batch, RayOptions(workers=1, retries=2), emit=kill_the_first_variants_worker)
    assert killed, "no worker was running the first variant"
    first = batch.records[variants[0].name]
    assert (first.status, first.attempts, first.frames) == ("done", 2, 24)
    whole = render(
        _elsewhere(batch.variants[0].settings, tmp_path / "whole"), backend=load_backend(ModelSettings(backend="tiny"))
    )
    assert _equal(read_frames(first.folder), read_frames(whole.folder))


def test_a_failing_variant_is_reported_while_the_others_go_on(tmp_path):
    preset = write_preset(tmp_path)
    missing = tmp_path / "no-such-model"
    variants = variants_of(preset, "backend=preview,diffusers", overrides=[f"model.model={missing}"])
    batch = new_batch("sweep", variants)
    run_batch(batch, RayOptions(workers=2))
    good, bad = (batch.records[variant.name] for variant in variants)
    assert (good.status, good.frames) == ("done", 4)
    assert bad.status == "failed" and str(missing) in bad.error


def test_a_queue_renders_each_preset_in_its_own_run(tmp_path):
    first = write_preset(tmp_path)
    second = tmp_path / "other.toml"
    second.write_text(first.read_text().replace("max_frames = 4", "max_frames = 2"))
    with collecting_notices():
        variants = queue_variants([first, second], [], check=prepared)
    batch = new_batch("queue", variants)
    run_batch(batch, RayOptions(workers=2))
    assert [(record.name, record.status, record.frames) for record in batch.records.values()] == [
        ("0_study", "done", 4),
        ("1_other", "done", 2),
    ]
    assert (batch.root / "queue.json").exists() and (batch.root / "queue.csv").exists()


def test_ctrl_c_stops_the_sweep_and_prints_the_command_that_finishes_it(tmp_path):
    preset = write_preset(tmp_path, frames=200)
    command = [str(ROOT / ".venv/bin/python"), str(ROOT / "main.py"), "sweep", str(preset), "--vary", "seed=1,2"]
    process = subprocess.Popen(
        [*command, "--workers", "2"], cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    while not list((tmp_path / "out").glob("study/sweep-*/*/frames/*.png")):  # stop once frames are written
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 130, rest
    resume = rest.strip().splitlines()[-1].strip()
    assert resume.startswith("main.py sweep") and "--resume" in resume
    finished = subprocess.run(
        [command[0], str(ROOT / resume.split()[0]), *resume.split()[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert finished.returncode == 0, finished.stderr
    record = json.loads(next((tmp_path / "out" / "study").glob("sweep-*/sweep.json")).read_text())
    assert [(row["status"], row["frames"]) for row in record["variants"]] == [("done", 200), ("done", 200)]


def _elsewhere(settings, outdir: Path):
    return settings.model_copy(update={"batch": settings.batch.model_copy(update={"outdir": str(outdir)})})


def _equal(first: list[np.ndarray], second: list[np.ndarray]) -> bool:
    return len(first) == len(second) > 0 and all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def _kill_workers(title: str) -> list[int]:
    """SIGKILL this test's processes whose command line starts with ``title`` (Ray names its
    workers so); only descendants of this process, never another suite's."""
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")[0].decode()
        except OSError:
            continue
        if cmdline.startswith(title) and _descends_from_us(int(entry.name)):
            os.kill(int(entry.name), signal.SIGKILL)
            killed.append(int(entry.name))
    return killed


def _descends_from_us(pid: int) -> bool:
    while pid > 1:
        try:
            pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
        if pid == os.getpid():
            return True
    return False


# -- in the engine -----------------------------------------------------------------------------


def test_the_engine_runs_a_sweep_as_a_job_a_client_can_attach_to_and_cancel(tmp_path):
    path = tmp_path / "run" / "engine.sock"
    process = start_engine(path)
    try:
        client = Client(path)
        client.send("hello")
        client.until(lambda m: m["type"] == "state")
        sweep = {"vary": ["seed=1,2"], "workers": 2}
        client.send("submit", settings=job(tmp_path, frames=4), sweep=sweep)
        done, seen = client.until(finished, timeout=300)
        assert done["state"] == "done", seen[-5:]
        started = next(m for m in seen if m["type"] == "batch")
        assert started["kind"] == "sweep" and started["variants"] == ["0_seed-1", "1_seed-2"]
        later = Client(path).snapshot()  # a client attaching now sees each variant
        variants = later["job"]["variants"]
        assert {name: (v["status"], v["frame"]) for name, v in variants.items()} == {
            "0_seed-1": ("done", 4),
            "1_seed-2": ("done", 4),
        }
        assert any(output.endswith("contact_sheet.mp4") for output in later["job"]["outputs"])

        client.send("submit", settings=job(tmp_path, frames=400), sweep={"vary": ["seed=3,4"], "workers": 2})
        client.until(lambda m: m["type"] == "variant" and m["frame"] >= 1, timeout=300)
        client.send("pause")
        refused, _ = client.until(lambda m: m["type"] == "error")
        assert "cannot pause" in refused["message"]
        client.send("cancel")
        stopped, _ = client.until(finished, timeout=300)
        assert stopped["state"] == "cancelled"
        record = json.loads((Path(stopped["job"]["folder"]) / "sweep.json").read_text())
        assert {row["status"] for row in record["variants"]} == {"interrupted"}
    finally:
        Client(path).send("shutdown")
        process.wait(timeout=60)
