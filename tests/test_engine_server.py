"""The engine process over a real Unix socket: snapshots, events, attach/detach, killed clients,
pause/resume/cancel, live edits, permissions, stale sockets, protocol versions."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import ROOT

from engine.protocol import VERSION
from engine.server import engine_running, spawn_engine


class Client:
    """A bare-socket client, as another program would write one."""

    opened: list[Client] = []

    def __init__(self, path: Path) -> None:
        Client.opened.append(self)
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.socket.connect(str(path))
        self.socket.settimeout(60)
        self.file = self.socket.makefile("rwb")

    def send(self, kind: str, **fields) -> None:
        self.file.write((json.dumps({"v": VERSION, "type": kind, **fields}) + "\n").encode())
        self.file.flush()

    def receive(self) -> dict:
        line = self.file.readline()
        assert line, "the engine closed the connection"
        return json.loads(line)

    def until(self, test, timeout: float = 180) -> tuple[dict, list[dict]]:
        """Messages up to the first that passes ``test``; the deadline only guards against a hang."""
        seen, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.receive()
            seen.append(message)
            if test(message):
                return message, seen
        raise AssertionError(f"timed out; last messages: {seen[-5:]}")

    def snapshot(self) -> dict:
        self.send("status")
        return self.until(lambda m: m["type"] == "state")[0]

    def close(self) -> None:
        self.file.close()
        self.socket.close()


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    while Client.opened:
        Client.opened.pop().close()


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    """Poll until ``condition()``; the deadline only guards against a hang."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start_engine(path: Path) -> subprocess.Popen:
    """An engine subprocess; what it prints goes to engine.out beside the socket's folder (which
    the engine makes itself, private, when it does not exist)."""
    output = path.parent.with_name(f"{path.parent.name}-engine.out")
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "engine", "--socket", str(path)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    def listening() -> bool:
        assert process.poll() is None, output.read_text()
        return engine_running(path)

    wait_for(listening, "the engine to listen")
    return process


@pytest.fixture
def engine(tmp_path):
    path = tmp_path / "run" / "engine.sock"
    process = start_engine(path)
    yield path
    if process.poll() is None:
        try:
            client = Client(path)
            client.send("shutdown")
            process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()


def job(tmp_path: Path, frames: int = 6, backend: str = "preview", **extra) -> dict:
    settings = {
        "animation": {"max_frames": frames},
        "image": {"W": 64, "H": 64},
        "model": {"backend": backend},
        "batch": {"outdir": str(tmp_path / "out")},
        "prompts": {"0": "a red fox"},
        "sampling": {"steps": 8, "seed": 5},
        "coherence": {"diffusion_cadence": 1},
    }
    for group, values in extra.items():
        settings[group] = {**settings.get(group, {}), **values}
    return settings


def finished(message: dict) -> bool:
    return message["type"] == "state" and message["state"] in ("done", "error", "cancelled")


def test_socket_is_private(engine):
    assert stat.S_IMODE(engine.stat().st_mode) == 0o600
    assert stat.S_IMODE(engine.parent.stat().st_mode) == 0o700


def test_hello_snapshot_and_a_full_render(engine, tmp_path):
    client = Client(engine)
    client.send("hello")
    hello = client.receive()
    assert hello["type"] == "state" and hello["state"] == "idle" and hello["job"] is None
    client.send("submit", settings=job(tmp_path))
    final, seen = client.until(finished)
    assert final["state"] == "done", seen[-3:]
    kinds = [m["type"] for m in seen]
    assert kinds.count("frame") == 6 and kinds.count("progress") == 6 and "done" in kinds
    progress = [m for m in seen if m["type"] == "progress"][-1]
    assert progress["frame"] == 6 and progress["total"] == 6 and progress["fps"] > 0
    assert Path(final["latest_frame"]).exists() and final["job"]["outputs"][-1].endswith("video.mp4")


def test_protocol_mismatch_and_garbage_are_answered(engine):
    client = Client(engine)
    client.send("hello", v=99)
    reply = client.receive()
    assert reply["type"] == "error" and "update the engine" in reply["message"]
    client.file.write(b"this is not json\n")
    client.file.flush()
    assert client.receive()["where"] == "protocol"
    client.send("dance")
    assert "unknown request" in client.receive()["message"]


def test_bad_settings_are_refused_with_the_field(engine, tmp_path):
    client = Client(engine)
    client.send("submit", settings=job(tmp_path, motion={"zoom": "0:(1+tt)"}))
    reply = client.receive()
    assert reply["type"] == "error" and reply["where"] == "motion.zoom" and "unknown variable 'tt'" in reply["message"]
    assert client.snapshot()["state"] == "idle"


def test_attach_detach_and_reattach_mid_render(engine, tmp_path):
    first = Client(engine)
    first.send("submit", settings=job(tmp_path, frames=60, backend="tiny"))
    first.until(lambda m: m["type"] == "progress" and m["frame"] >= 3)
    second = Client(engine)
    second.send("hello")
    snapshot = second.receive()
    assert snapshot["state"] == "rendering" and snapshot["progress"]["frame"] >= 3
    assert snapshot["job"]["settings"]["prompts"] == {"0": "a red fox"} and Path(snapshot["latest_frame"]).exists()
    second.close()
    first.close()  # every client gone: the render goes on
    third = Client(engine)
    final = third.snapshot()  # the state now, then every change: "done" cannot slip between the two
    if final["state"] != "done":
        final, _ = third.until(finished)
    assert final["state"] == "done" and final["progress"]["frame"] == 60 > snapshot["progress"]["frame"]


def test_killing_the_client_process_does_not_stop_the_render(engine, tmp_path):
    request = json.dumps({"v": VERSION, "type": "submit", "settings": job(tmp_path, frames=40, backend="tiny")})
    script = textwrap.dedent(f"""
        import socket, time
        s = socket.socket(socket.AF_UNIX); s.connect({str(engine)!r})
        s.sendall({(request + chr(10)).encode()!r})
        time.sleep(60)
    """)
    tui = subprocess.Popen([sys.executable, "-c", script])
    frames = tmp_path / "out" / "driftwave"
    wait_for(lambda: list(frames.glob("*/frames/000002.png")), "frame 2", timeout=120)
    tui.send_signal(signal.SIGKILL)
    tui.wait()
    watcher = Client(engine)
    final = watcher.snapshot()  # the state now, then every change: "done" cannot slip between the two
    if final["state"] != "done":
        final, _ = watcher.until(finished)
    assert final["state"] == "done"
    assert len(list(frames.glob("*/frames/*.png"))) == 40


def test_pause_resume_and_cancel(engine, tmp_path):
    client = Client(engine)
    client.send("submit", settings=job(tmp_path, frames=200, backend="tiny"))
    client.until(lambda m: m["type"] == "progress" and m["frame"] >= 2)
    client.send("pause")
    paused, _ = client.until(lambda m: m["type"] == "state" and m["state"] == "paused")
    # paused: at most the frame in flight is finished, then nothing comes until resume. The sleep
    # is a window to watch for frames that must not come, not a bound on how fast anything runs.
    time.sleep(1.5)
    client.send("status")
    now, during = client.until(lambda m: m["type"] == "state")
    before = paused["progress"]["frame"]
    progressed = [m["frame"] for m in during if m["type"] == "progress"]
    assert len(progressed) <= 1 and all(before <= frame <= before + 1 for frame in progressed), during
    assert now["state"] == "paused" and now["progress"]["frame"] <= before + 1
    before = now["progress"]["frame"]
    client.send("resume")
    client.until(lambda m: m["type"] == "progress" and m["frame"] > before + 2)
    client.send("cancel")
    final, _ = client.until(finished)
    assert final["state"] == "cancelled"
    folder = Path(final["job"]["folder"])
    assert (folder / "state.json").exists()  # resumable


def test_live_edit_applies_from_the_next_frame_and_is_recorded(engine, tmp_path):
    client = Client(engine)
    settings = job(tmp_path, frames=80, backend="tiny")
    client.send("submit", settings=settings)
    client.until(lambda m: m["type"] == "progress" and m["frame"] >= 3)
    edited = json.loads(json.dumps(settings))
    edited["prompts"] = {"0": "a blue whale"}
    edited["motion"] = {"zoom": "0:(1.1)"}
    client.send("update", settings=edited)
    client.until(lambda m: m["type"] == "log" and "edit received" in m["message"])
    applied, _ = client.until(lambda m: m["type"] == "log" and "edit applied from frame" in m["message"])
    frame = int(applied["message"].rsplit(" ", 1)[1])
    wrong = json.loads(json.dumps(edited))
    wrong["image"]["W"] = 128
    client.send("update", settings=wrong)
    refused = client.until(lambda m: m["type"] == "error")[0]
    assert "image.W cannot change during a render" in refused["message"]
    client.send("cancel")
    final, _ = client.until(finished)
    history = (Path(final["job"]["folder"]) / "settings_history.jsonl").read_text().splitlines()
    entry = json.loads(history[0])
    assert entry["from_frame"] == frame >= 3 and entry["settings"]["prompts"] == {"0": "a blue whale"}


def test_a_second_engine_refuses_the_same_socket(engine):
    second = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "engine", "--socket", str(engine)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert second.returncode == 2 and "already running" in second.stderr


def test_a_stale_socket_is_cleaned_up(tmp_path):
    path = tmp_path / "stale" / "engine.sock"
    path.parent.mkdir(mode=0o700)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens: an engine that died
    process = start_engine(path)
    try:
        client = Client(path)
        assert client.snapshot()["state"] == "idle"
        client.send("shutdown")
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert not path.exists()


def test_spawned_engine_is_detached_from_the_terminal(tmp_path):
    path = tmp_path / "detached" / "engine.sock"
    pid = spawn_engine(path, idle_exit=30)
    try:
        wait_for(lambda: engine_running(path), "the spawned engine to listen")
        assert os.getsid(pid) == pid != os.getsid(0)  # its own session: a hang-up here does not reach it
        assert Client(path).snapshot()["pid"] == pid
    finally:
        os.kill(pid, signal.SIGTERM)


def test_a_live_session_streams_frames_takes_controls_and_edits(engine, tmp_path):
    client = Client(engine)
    client.send("control", frozen=True)
    assert "no live session" in client.until(lambda m: m["type"] == "error")[0]["message"]
    settings = job(
        tmp_path,
        live={"target_fps": 10},
        audio={"filters": [{"name": "fLo", "f_center": 105, "f_width": 65}]},
        motion={"zoom": "0:(1 + 0.05*fLo)"},
    )
    track = str(ROOT / "presets" / "demo_track.flac")
    client.send("submit", settings=settings, live={"audio_file": track, "duration": 4})
    first, seen = client.until(lambda m: m["type"] == "live")
    assert set(first["audio"]) >= {"fLo", "amp", "onset", "beat"} and Path(first["path"]).exists()
    edited = dict(settings, motion={"zoom": "0:(1.02)"})
    client.send("update", settings=edited)
    seen += client.until(lambda m: m["type"] == "log" and "edit received" in m["message"])[1]
    client.send("control", frozen=True, snapshot=True)
    snapshot, more = client.until(lambda m: m["type"] == "log" and m["message"].startswith("snapshot: "))
    assert Path(snapshot["message"].removeprefix("snapshot: ")).exists()
    final, rest = client.until(finished)
    seen += more + rest
    frames = [m["frame"] for m in seen if m["type"] == "live"]
    summary = next(m["message"] for m in seen if m["type"] == "log" and " frames in " in m["message"])
    # every frame rendered reached the client, in order (how many fit in 4 s depends on the machine)
    rendered = int(summary.split(" frames in ")[0])
    assert final["state"] == "done" and frames == list(range(rendered)) and rendered >= 2
