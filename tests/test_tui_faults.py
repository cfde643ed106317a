"""Real faults while a TUI is attached, with real processes: the engine SIGKILLed mid-render.
The TUI says so, keeps the edits, and Render starts a new engine that resumes the same run from
its last complete frame and then applies the edits as a live edit."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
from test_engine_server import start_engine
from test_tui import make, running
from textual.widgets import Input

from tui.panes import MotionPane

HANG = 120.0  # only guards against a hang: every wait below ends on what it waits for
EDIT = "0:(2*sin(t/5))"
PRESET = """\
[animation]
animation_mode = "2D"
max_frames = 20000  # does not finish during the test (the Motion tab plots every frame: not more)

[prompts]
0 = "a harbour at dawn"

[motion]
angle = "0:(0.5*sin(t/10))"  # an expression: the Motion tab plots its keyframes
zoom = "0:(1.01 + 0.005*cos(t/20))"

[model]
backend = "preview"

[image]
W = 64
H = 64

[sampling]
seed = 7

[batch]
outdir = "{outdir}"
"""


def engine_pids(path: Path) -> list[int]:
    """Live engine processes serving ``path``: the test's own and those the TUI started detached
    (they are nobody's child here), found by the socket named in their command line."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"engine" in args and str(path).encode() in args:
            pids.append(int(entry.name))
    return pids


@pytest.fixture
def engine(tmp_path, monkeypatch):
    """A real engine subprocess on a socket under tmp_path; afterwards every engine on that
    socket is killed, even when the test failed."""
    runtime = tmp_path / "xdg"
    runtime.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    path = tmp_path / "engine.sock"
    process = start_engine(path)
    yield path, process
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)
    for pid in engine_pids(path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def until(pilot, condition, what: str) -> None:
    """Let the app run until ``condition()``; the deadline only guards against a hang."""
    deadline = time.monotonic() + HANG
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.05)


def complete_frames(folder: Path) -> list[Path]:
    """Written frames (a hidden .part file is one being written)."""
    frames = folder / "frames"
    return sorted(p for p in frames.iterdir() if not p.name.startswith(".")) if frames.is_dir() else []


def run_folder(app) -> Path | None:
    folder = (app.job or {}).get("folder")
    return Path(folder) if folder else None


async def test_an_engine_killed_mid_render_is_reported_and_render_resumes_the_run(tmp_path, engine):
    path, process = engine
    preset = tmp_path / "harbour.toml"
    preset.write_text(PRESET.format(outdir=tmp_path / "out"))
    app = make(tmp_path, preset=preset, connect=True)
    app.edit_pause = 3600.0  # the edit below stays unsent until the engine is gone, however slow the machine
    async with running(app) as pilot:
        await until(pilot, lambda: app.engine_state == "idle", "the app to attach to the engine")
        assert app.engine_pid == process.pid and not app.client.started_engine
        await pilot.press("ctrl+r")
        await until(
            pilot,
            lambda: app.engine_state == "rendering" and run_folder(app) and len(complete_frames(run_folder(app))) >= 3,
            "3 frames",
        )
        folder = run_folder(app)
        timestring = folder.name

        app.action_tab("motion")
        app.query_one(MotionPane).select("motion.angle")
        await pilot.pause()
        app.query_one("#schedule-input", Input).value = EDIT
        await pilot.pause()
        assert app.session.settings.motion.angle == EDIT  # an edit not yet sent (it waits for typing to pause)

        os.kill(process.pid, signal.SIGKILL)
        killed = time.monotonic()
        process.wait(timeout=30)
        written = {frame.name: frame.read_bytes() for frame in complete_frames(folder)}
        await until(pilot, lambda: app.engine_state == "disconnected", "the app to see the engine gone")
        noticed = time.monotonic() - killed
        print(f"engine SIGKILLed: the TUI showed it disconnected after {noticed:.3f} s; {len(written)} frames")

        assert app.session.settings.motion.angle == EDIT and app.session.dirty  # the edit is kept
        assert app.resumable and app.resumable["timestring"] == timestring
        status = str(app.query_one("#render-status").render())
        assert f"stopped while rendering run {timestring}" in status and "your edits are kept" in status
        notes = " ".join(note.message for note in app._notifications)
        assert "it stopped or crashed" in notes and "your edits are kept" in notes
        assert f"resumes run {timestring}" in notes
        assert f"engine stopped · Render resumes run {timestring}" in app.sub_title

        await pilot.press("ctrl+r")
        lines = app.render_pane.lines

        def resumed() -> bool:
            return (
                app.engine_pid not in (None, process.pid)
                and app.engine_state == "rendering"
                and (app.job or {}).get("resume") == timestring
                and len(complete_frames(folder)) > len(written)
                and any(line.startswith("edit applied from frame") for line in lines)
            )

        await until(pilot, resumed, "a new engine to resume the run and take the edit")
        assert app.client.started_engine and app.engine_pid in engine_pids(path)
        assert Path(app.job["folder"]) == folder  # the same run, not a new one

        said = next(line for line in lines if line.startswith(f"resuming run {timestring} from frame "))
        start = int(re.search(r"from frame (\d+)", said).group(1))
        assert f"resuming at frame {start}" in lines  # the engine confirms where it continues
        assert 0 < start <= len(written)
        assert "your edits follow as a live edit" in said
        for name, data in written.items():
            index = int(Path(name).stem)
            if index < start:
                assert (folder / "frames" / name).read_bytes() == data, f"frame {name} was rewritten"

        assert any(line.startswith("edit received (motion.angle)") for line in lines)
        applied = int(next(line for line in lines if line.startswith("edit applied from frame")).split()[-1])
        assert applied >= start
        history = [json.loads(line) for line in (folder / "settings_history.jsonl").read_text().splitlines()]
        assert history[-1]["from_frame"] == applied and history[-1]["settings"]["motion"]["angle"] == EDIT
        await app.client.send("shutdown")
