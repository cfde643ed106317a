"""Faults, for real, each in a real subprocess: a render killed at any moment (in the middle of
writing a frame or the state too) and resumed; a bug inside the engine's render thread; a disk
that fills up (a file size limit, and where user namespaces allow it a small filesystem)."""

from __future__ import annotations

import ctypes
import json
import os
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT

from engine.protocol import VERSION
from engine.server import engine_running

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}  # whole and resumed alike
PNG_END = b"IEND\xaeB`\x82"
HANG = 180  # seconds: every deadline here only guards against a hang


def write_preset(folder: Path, *, frames: int = 12, audio: Path | None = None, outdir: Path | None = None) -> Path:
    """3D with flat depth, diffusion cadence 2, LAB colour coherence: the state a resume needs
    (the previous image, the colour reference, the next group) is all there. The preview backend
    is the cheapest that runs the whole frame loop (warp, coherence, seeded noise, writes)."""
    folder.mkdir(parents=True, exist_ok=True)
    track = f'\n[audio]\nfile = "{audio}"\n\n[video]\nsoundtrack = "audio"\n' if audio else ""
    text = f"""
        [animation]
        animation_mode = "3D"
        max_frames = {frames}
        fps = 12

        [image]
        W = 64
        H = 64

        [prompts]
        0 = "a canyon at dawn"

        [model]
        backend = "preview"

        [sampling]
        seed = 7
        steps = 4

        [motion]
        translation_z = "0:(4)"
        rotation_3d_y = "0:(1)"
        noise_schedule = "0:(0.02)"
        strength_schedule = "0:(0.6)"

        [depth]
        depth_model = "flat"

        [coherence]
        diffusion_cadence = 2
        color_coherence = "LAB"

        [batch]
        outdir = "{outdir or folder / "out"}"
        """
    path = folder / "fault.toml"
    path.write_text(textwrap.dedent(text) + track)
    return path


def render_command(preset: Path, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "main.py"), "render", str(preset), *extra]


def run_render(preset: Path, *extra: str, **options) -> subprocess.CompletedProcess:
    return subprocess.run(
        render_command(preset, *extra), capture_output=True, text=True, env=ENV, timeout=600, **options
    )


def run_folder(preset: Path) -> Path:
    (folder,) = (preset.parent / "out" / "driftwave").iterdir()
    return folder


def wait_for(condition: Callable[[], object], what: str, timeout: float = HANG):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
    return found


def complete_frames(folder: Path, *, killed: bool = False) -> list[np.ndarray]:
    """The frames of a run, each checked whole: every PNG ends with its IEND chunk and decodes,
    and nothing else is in the folder (after a kill, only the hidden temporary file of the
    frame being written, which a resume removes)."""
    names = sorted(path.name for path in (folder / "frames").iterdir())
    if killed:
        names = [name for name in names if not (name.startswith(".") and name.endswith(".png.part"))]
    assert all(not name.startswith(".") and name.endswith(".png") for name in names), names
    frames = []
    for name in names:
        data = (folder / "frames" / name).read_bytes()
        assert data.endswith(PNG_END), f"{name} is cut short"
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert image is not None and image.shape == (64, 64, 3), name
        frames.append(image)
    return frames


def hidden_files(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob(".*"))


def assert_state_readable(folder: Path) -> None:
    """state.json, when there is one, is whole JSON naming tensors that exist."""
    path = folder / "state.json"
    if path.exists():
        state = json.loads(path.read_text())
        assert all((folder / "state" / name).is_file() for name in state["tensors"].values()), state


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> list[np.ndarray]:
    """The frames of the run rendered without interruption."""
    preset = write_preset(tmp_path_factory.mktemp("whole"))
    result = run_render(preset)
    assert result.returncode == 0, result.stderr
    return complete_frames(run_folder(preset))


# -- killed at any moment -------------------------------------------------------------------------


class Inotify:
    """File creations in some folders, as they happen (Linux inotify through libc)."""

    IN_CREATE, IN_MOVED_TO = 0x100, 0x80

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_CLOEXEC)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        self.folders: dict[int, Path] = {}

    def watch(self, folder: Path) -> None:
        handle = self.libc.inotify_add_watch(self.fd, str(folder).encode(), self.IN_CREATE | self.IN_MOVED_TO)
        assert handle >= 0, os.strerror(ctypes.get_errno())
        self.folders[handle] = folder

    def created(self, timeout: float) -> list[Path]:
        if not select.select([self.fd], [], [], timeout)[0]:
            return []
        data, paths, offset = os.read(self.fd, 65536), [], 0
        while offset < len(data):
            handle, _, _, size = struct.unpack_from("iIII", data, offset)
            name = data[offset + 16 : offset + 16 + size].rstrip(b"\0").decode()
            paths.append(self.folders[handle] / name)
            offset += 16 + size
        return paths

    def close(self) -> None:
        os.close(self.fd)


def stopped(pid: int) -> bool:
    """Every thread of ``pid`` stands still (a SIGSTOP is asynchronous: it lands a moment later;
    a thread inside a system call, e.g. fsync, stops when the call returns)."""
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        states = [(task / "stat").read_text().rsplit(")", 1)[1].split()[0] for task in tasks]
    except FileNotFoundError:  # the process or a thread has just ended
        return not Path(f"/proc/{pid}").exists() or stopped(pid)
    return all(state in "tTZX" for state in states)


def kill_inside_a_write(process: subprocess.Popen, watcher: Inotify, is_target: Callable[[Path], bool]) -> Path | None:
    """Stop the render whenever a temporary file it writes appears; if the file is still there
    once every thread stands still, the render is inside that write: kill it there. Else let it
    go on to the next one. Returns the file it was killed writing (None: the run ended first)."""
    deadline = time.monotonic() + HANG
    while process.poll() is None:
        assert time.monotonic() < deadline, "the render did not end"
        for path in watcher.created(timeout=1.0):
            if not is_target(path):
                continue
            process.send_signal(signal.SIGSTOP)
            wait_for(lambda: stopped(process.pid), "the render to stop", timeout=30)
            if path.exists():
                process.send_signal(signal.SIGKILL)
                process.wait()
                return path
            process.send_signal(signal.SIGCONT)
    return None


def frame_part(first: int, last: int) -> Callable[[Path], bool]:
    """The temporary file of a frame from ``first`` to ``last``."""

    def is_target(path: Path) -> bool:
        return path.parent.name == "frames" and path.name.endswith(".png.part") and first <= int(path.name[1:7]) <= last

    return is_target


def state_part(path: Path) -> bool:
    """The temporary file of a state saved after the first one (a tensor, or state.json)."""
    if path.name.endswith(".pt.part"):
        return not path.name.endswith("-1.pt.part")
    saved = path.parent / "state.json"
    return path.name == ".state.json.part" and saved.exists() and '"next_group": 1,' not in saved.read_text()


# a moment is a test of the run folder, or (the "inside a ..." ones) of a file just created in it
KILLS = {
    "inside a write in the first group, before any state": frame_part(0, 1),
    "after five frames": lambda folder: len(list((folder / "frames").glob("*.png"))) >= 5,
    "inside a frame write": frame_part(4, 99),
    "inside a state write": state_part,
}


def render_and_kill(preset: Path, moment: str) -> tuple[Path, Path | None] | None:
    """Start the render and SIGKILL it at ``moment``: its run folder and the file it was killed
    writing; None when the render ended before a write could be caught in the middle."""
    runs = preset.parent / "out" / "driftwave"
    runs.mkdir(parents=True)
    watcher = Inotify()
    watcher.watch(runs)  # from before the run folder exists: no write of the run is missed
    errors = preset.parent / "stderr.txt"
    with errors.open("wb") as sink:
        process = subprocess.Popen(render_command(preset), stdout=subprocess.DEVNULL, stderr=sink, env=ENV)
    killed_in = None
    try:
        created = wait_for(lambda: watcher.created(timeout=1.0) or process.poll() is not None, "the run folder")
        assert created is not True, errors.read_text()
        (folder,) = created
        wait_for(lambda: (folder / "frames").is_dir(), "the frames folder")
        for watched in (folder, folder / "frames", folder / "state"):
            watched.mkdir(exist_ok=True)  # state/: as save_state makes it, watched from its first write
            watcher.watch(watched)
        if moment.startswith("inside a"):
            killed_in = kill_inside_a_write(process, watcher, KILLS[moment])
            if killed_in is None:
                return None
            print(f"killed writing {killed_in.relative_to(folder)}")
        else:
            wait_for(lambda: KILLS[moment](folder) or process.poll() is not None, moment)
            process.send_signal(signal.SIGKILL)
            process.wait()
    finally:
        watcher.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL, errors.read_text()
    return folder, killed_in


@pytest.mark.parametrize("moment", list(KILLS))
def test_a_render_killed_at_any_moment_resumes_to_the_same_frames(tmp_path, whole, moment):
    preset = write_preset(tmp_path)
    for _ in range(3):  # a write may be over before it can be caught: then a new run
        shutil.rmtree(tmp_path / "out", ignore_errors=True)
        killed = render_and_kill(preset, moment)
        if killed is not None:
            break
    else:
        pytest.fail(f"three renders ended before one could be stopped {moment}")
    folder, killed_in = killed
    # what the kill left: only whole frames are visible, the state is readable
    left = complete_frames(folder, killed=True)
    assert all(np.array_equal(a, b) for a, b in zip(left, whole, strict=False))
    if killed_in is not None and killed_in.parent.name == "frames":  # the frame being written is not there
        assert not (folder / "frames" / killed_in.name[1:].removesuffix(".part")).exists()
    assert_state_readable(folder)
    assert (folder / "state.json").exists() != moment.endswith("before any state")
    resumed = run_render(preset, "--resume", folder.name)
    assert resumed.returncode == 0, resumed.stderr
    frames = complete_frames(folder)
    assert len(frames) == len(whole) and all(np.array_equal(a, b) for a, b in zip(frames, whole, strict=True))
    assert hidden_files(folder) == [] and (folder / "video.mp4").exists()


# -- a bug inside the engine's render thread -----------------------------------------------------

# The engine as `main.py engine` runs it, with one bug put in for the test: on the first job
# the frame on its way to the writer is lost at frame 3 (the real writer then fails on it)
FAULTY_ENGINE = """
import runpy, sys
import engine.modes

real_write_image, lost = engine.modes.write_image, []

def write_image(image, path, **options):
    if path.name == "000003.png" and not lost:
        lost.append(path)
        image = None
    return real_write_image(image, path, **options)

engine.modes.write_image = write_image
sys.argv = [{main!r}, *sys.argv[1:]]
runpy.run_path({main!r}, run_name="__main__")
"""


def engine_job(tmp_path: Path, name: str) -> dict:
    return {
        "animation": {"animation_mode": "3D", "max_frames": 6},
        "image": {"W": 64, "H": 64},
        "model": {"backend": "preview"},
        "batch": {"outdir": str(tmp_path / name)},
        "prompts": {"0": "a red fox"},
        "depth": {"depth_model": "flat"},
        "coherence": {"diffusion_cadence": 2, "color_coherence": "LAB"},
    }


def test_a_bug_in_the_render_thread_is_reported_with_where_and_the_engine_goes_on(tmp_path):
    path = tmp_path / "run" / "engine.sock"
    path.parent.mkdir(mode=0o700)
    log = tmp_path / "engine.out"
    with log.open("wb") as sink:
        engine = subprocess.Popen(
            [sys.executable, "-c", FAULTY_ENGINE.format(main=str(ROOT / "main.py")), "engine", "--socket", str(path)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=ENV,
        )
    closing = []
    try:
        wait_for(lambda: engine.poll() is not None or engine_running(path), "the engine to listen")
        assert engine.poll() is None, log.read_text()
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        closing.append(client)
        client.connect(str(path))
        client.settimeout(HANG)
        stream = client.makefile("rwb")
        closing.append(stream)

        def send(kind: str, **fields) -> None:
            stream.write((json.dumps({"v": VERSION, "type": kind, **fields}) + "\n").encode())
            stream.flush()

        def until_finished() -> list[dict]:
            seen = []
            while not seen or not (seen[-1]["type"] == "state" and seen[-1]["state"] in ("done", "error")):
                line = stream.readline()
                assert line, "the engine closed the connection"
                seen.append(json.loads(line))
            return seen

        send("submit", settings=engine_job(tmp_path, "first"))
        seen = until_finished()
        assert seen[-1]["state"] == "error"
        (error,) = [m for m in seen if m["type"] == "error"]
        assert "AttributeError" in error["message"]
        assert "engine/images.py:" in error["where"] and error["where"].endswith("in write_image"), error
        frames = [m["index"] for m in seen if m["type"] == "frame"]
        assert frames == [0, 1, 2]
        text = log.read_text()
        assert "Traceback (most recent call last)" in text and "in write_image" in text and "AttributeError" in text
        # the engine is still up, and the next job renders
        send("submit", settings=engine_job(tmp_path, "second"))
        seen = until_finished()
        assert seen[-1]["state"] == "done", seen[-5:]
        assert [m["index"] for m in seen if m["type"] == "frame"] == list(range(6))
        send("shutdown")
        assert engine.wait(timeout=HANG) == 0
    finally:
        for thing in reversed(closing):
            thing.close()
        if engine.poll() is None:
            engine.kill()
            engine.wait()


# -- a disk that fills up -------------------------------------------------------------------------


def file_size_limit(limit: int) -> Callable[[], None]:
    """For preexec_fn: no file may grow past ``limit`` bytes; writes past it fail with EFBIG."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def assert_one_clear_message(stderr: str, *reasons: str) -> None:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    assert any(reason in stderr for reason in reasons), stderr


def assert_resumes_to_the_whole_run(preset: Path, folder: Path, whole: list[np.ndarray]) -> None:
    resumed = run_render(preset, "--resume", folder.name)
    assert resumed.returncode == 0, resumed.stderr
    frames = complete_frames(folder)
    assert len(frames) == len(whole) and all(np.array_equal(a, b) for a, b in zip(frames, whole, strict=True))
    assert hidden_files(folder) == [] and (folder / "video.mp4").exists()


def reference_run(folder: Path, **preset) -> tuple[list[np.ndarray], Path]:
    path = write_preset(folder, **preset)
    result = run_render(path)
    assert result.returncode == 0, result.stderr
    return complete_frames(run_folder(path)), run_folder(path)


def test_a_full_disk_while_saving_the_state_stops_cleanly_and_resumes(tmp_path):
    whole, reference = reference_run(tmp_path / "whole")
    frame = max(path.stat().st_size for path in (reference / "frames").iterdir())
    tensors = min(path.stat().st_size for path in (reference / "state").iterdir())
    assert frame < tensors  # the limit lets frames through and stops the state's tensors
    preset = write_preset(tmp_path / "limited")
    failed = run_render(preset, preexec_fn=file_size_limit((frame + tensors) // 2))
    assert failed.returncode == 2
    assert_one_clear_message(failed.stderr, "File too large")
    folder = run_folder(preset)
    assert complete_frames(folder) and hidden_files(folder) == []
    assert_state_readable(folder)
    assert not (folder / "video.mp4").exists()
    assert_resumes_to_the_whole_run(preset, folder, whole)


@pytest.mark.parametrize("step", ["encoding", "adding the soundtrack"])
def test_a_full_disk_while_making_the_video_keeps_the_frames_and_says_so(tmp_path, step):
    audio = None
    if step == "adding the soundtrack":
        import soundfile

        audio = tmp_path / "tone.wav"
        seconds = np.arange(44100 * 4) / 44100
        soundfile.write(audio, (0.3 * np.sin(2 * np.pi * 440 * seconds)).astype(np.float32), 44100)
    frames = 36 if audio else 120  # a video larger than any frame or state file
    whole, reference = reference_run(tmp_path / "whole", frames=frames, audio=audio)
    video = (reference / "video.mp4").stat().st_size
    largest = max(path.stat().st_size for path in reference.rglob("*") if path.is_file() and path.name != "video.mp4")
    # without sound the encoder's own file outgrows the limit; with it, the silent video fits and the mux fails
    limit = (largest + video) // 2 if audio is None else video - 2000
    assert largest < limit < video
    preset = write_preset(tmp_path / "limited", frames=frames, audio=audio)
    failed = run_render(preset, preexec_fn=file_size_limit(limit))
    assert failed.returncode == 2
    assert_one_clear_message(failed.stderr, "File too large")
    assert "video" in failed.stderr and ("soundtrack" in failed.stderr) == (audio is not None)
    assert "frames are kept" in failed.stderr and f"--resume {run_folder(preset).name}" in failed.stderr
    folder = run_folder(preset)
    assert len(complete_frames(folder)) == frames and hidden_files(folder) == []
    assert json.loads((folder / "state.json").read_text())["frames_done"] == frames
    assert not (folder / "video.mp4").exists()
    assert_resumes_to_the_whole_run(preset, folder, whole)


def small_filesystems() -> bool:
    """Whether a user namespace may mount a tmpfs here (``unshare -Urm``, no root needed)."""
    if shutil.which("unshare") is None:
        return False
    with tempfile.TemporaryDirectory() as folder:
        probe = subprocess.run(
            ["unshare", "-Urm", "mount", "-t", "tmpfs", "-o", "size=64k", "probe", folder], capture_output=True
        )
    return probe.returncode == 0


@pytest.mark.skipif(not small_filesystems(), reason="no user namespaces here to mount a small filesystem")
def test_a_small_filesystem_that_fills_up_mid_run_stops_cleanly_and_resumes(tmp_path):
    whole, _ = reference_run(tmp_path / "whole")
    disk, after, resumed = tmp_path / "disk", tmp_path / "after-failure", tmp_path / "resumed"
    for folder in (disk, after, resumed):
        folder.mkdir()
    preset = write_preset(tmp_path, outdir=disk / "out")
    # a 240 KiB filesystem: the run's first files, some frames and a state fit, then it is full;
    # then more room (remount) and --resume, all in one mount namespace
    script = f"""
        mount -t tmpfs -o size=240k driftwave-test {disk} || exit 3
        {sys.executable} {ROOT / "main.py"} render {preset} > {tmp_path}/out1 2> {tmp_path}/err1
        echo $? > {tmp_path}/rc1
        cp -a {disk}/. {after}/
        mount -o remount,size=64m {disk} || exit 3
        {sys.executable} {ROOT / "main.py"} render {preset} --resume $(ls {disk}/out/driftwave) \
            > {tmp_path}/out2 2> {tmp_path}/err2
        echo $? > {tmp_path}/rc2
        cp -a {disk}/out/. {resumed}/
        """
    subprocess.run(["unshare", "-Urm", "sh", "-c", textwrap.dedent(script)], env=ENV, timeout=600, check=True)
    failed_stderr = (tmp_path / "err1").read_text()
    assert (tmp_path / "rc1").read_text().strip() == "2", failed_stderr
    assert_one_clear_message(failed_stderr, "No space left on device")
    (failed,) = (after / "out" / "driftwave").iterdir()
    kept = complete_frames(failed)
    assert 0 < len(kept) < len(whole) and all(np.array_equal(a, b) for a, b in zip(kept, whole, strict=False))
    assert hidden_files(failed) == [] and not (failed / "video.mp4").exists()
    assert_state_readable(failed)
    assert (tmp_path / "rc2").read_text().strip() == "0", (tmp_path / "err2").read_text()
    (done,) = (resumed / "driftwave").iterdir()
    frames = complete_frames(done)
    assert len(frames) == len(whole) and all(np.array_equal(a, b) for a, b in zip(frames, whole, strict=True))
    assert hidden_files(done) == [] and (done / "video.mp4").exists()
