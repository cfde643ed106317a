"""Live mode with the file source and real backends: envelopes as offline, edits next frame,
device loss, quick controls, recording in sync, the command."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
import soundfile
from scipy import signal

from audio.envelopes import design_filter, frame_starts, window_rms
from audio.live import FileSource, LiveEnvelopes
from audio.load import load_audio
from engine.backends import load_backend
from engine.errors import DriftwaveError, collecting_notices
from engine.images import to_array
from engine.live import LiveSession, record_session
from engine.presets import settings_from_data
from engine.settings import ModelSettings

ROOT = Path(__file__).resolve().parent.parent
RATE = 22050
FPS = 20
FILTERS = [{"name": "fLo", "f_center": 105, "f_width": 65}, {"name": "fHi", "f_center": 900, "f_width": 600}]


@pytest.fixture(scope="module")
def preview():
    return load_backend(ModelSettings(backend="preview"))


def live_settings(**groups):
    data = {
        "image": {"W": 64, "H": 64},
        "prompts": {"0": "a lantern festival", "10": "a frozen lake"},
        "model": {"backend": "preview"},
        "live": {"target_fps": FPS},
        "audio": {"filters": FILTERS},
        "motion": {"zoom": "0:(1)", "angle": "0:(0)", "translation_x": "0:(0)", "noise_schedule": "0:(0)"},
    }
    for group, values in groups.items():
        data[group] = {**data.get(group, {}), **values}
    with collecting_notices():
        return settings_from_data(data)


def stepped_tones(path: Path, seconds: float = 2.0) -> Path:
    """Low and high tones whose levels change every quarter second."""
    time_axis = np.arange(int(RATE * seconds)) / RATE
    rng = np.random.default_rng(0)
    low_levels, high_levels = rng.uniform(0.05, 0.5, 8), rng.uniform(0.05, 0.5, 8)
    step = np.minimum((time_axis / 0.25).astype(int), 7)
    samples = low_levels[step] * np.sin(2 * np.pi * 100 * time_axis) + high_levels[step] * np.sin(
        2 * np.pi * 1000 * time_axis
    )
    soundfile.write(path, samples.astype(np.float32), RATE)
    return path


def offline_raw(path: Path, frames: int) -> np.ndarray:
    """Raw per-frame RMS of each filter and the amplitude, as the offline analysis computes it."""
    track = load_audio(path)
    starts = frame_starts(frames, FPS, track.rate)
    settings = live_settings()
    columns = [
        window_rms(signal.sosfilt(design_filter(spec, track.rate).sos, track.samples), starts)
        for spec in settings.audio.filters
    ]
    columns.append(window_rms(track.samples, starts))
    return np.stack(columns, axis=1)


def file_source(path: Path, **options) -> FileSource:
    settings = live_settings()
    return FileSource(load_audio(path), settings.audio.filters, FPS, **options)


def picture(session: LiveSession) -> np.ndarray:
    return to_array(session.image).astype(float)


def test_the_loop_reads_the_offline_envelopes_of_the_newest_audio_frame(tmp_path, preview):
    path = stepped_tones(tmp_path / "steps.wav")
    source = file_source(path, loop=False)
    envelopes = source.envelopes
    ready_before, ready_after = [], []  # audio frames complete when each picture began and ended

    def before_each_frame() -> bool:
        ready_before.append(envelopes.frames)
        return len(ready_before) > 2000  # only a hang guard: the track's end stops the loop

    session = LiveSession(
        live_settings(),
        preview,
        source,
        keep_statuses=True,
        on_frame=lambda status, image: ready_after.append(envelopes.frames),
    )
    summary = session.run(should_stop=before_each_frame)
    assert source.finished.wait(60)
    deadline = time.monotonic() + 60  # the worker takes in the last blocks
    while envelopes.frames < 40:
        assert time.monotonic() < deadline, f"{envelopes.frames} of 40 audio frames"
        time.sleep(0.01)
    assert len(summary.statuses) == len(ready_after) and len(ready_before) >= len(ready_after)
    last = session.step()  # after the track: the newest audio frame is its last one
    source.close()
    offline = offline_raw(path, 40)
    statuses = [*summary.statuses, last]
    assert last.audio_frame == 40
    for status, low, high in zip(summary.statuses, ready_before, ready_after, strict=False):
        # each picture read the newest audio frame complete when it began (not a stale one) ...
        assert low <= status.audio_frame <= high
    assert [s.audio_frame for s in statuses] == sorted(s.audio_frame for s in statuses)
    for status in statuses:
        if status.audio_frame > 0:  # ... with the values the offline analysis has for that frame
            np.testing.assert_allclose(status.raw, offline[status.audio_frame - 1], rtol=1e-3, atol=1e-5)
    # the latency (sound arrival to picture ready) is measured for every frame and reported
    latencies = [status.latency_ms for status in summary.statuses]
    assert latencies and all(np.isfinite(latencies)) and min(latencies) > 0
    assert summary.mean_latency_ms == pytest.approx(np.mean(latencies))
    assert f"audio to frame {summary.mean_latency_ms:.0f} ms" in summary.line()


def test_an_edit_applies_on_the_next_frame_and_a_bad_one_changes_nothing(tmp_path, preview):
    source = file_source(stepped_tones(tmp_path / "steps.wav"), loop=True)
    settings = live_settings(motion={"strength_schedule": "0:(0.9)"})
    session = LiveSession(settings, preview, source)
    for _ in range(3):
        session.step()
    before = picture(session)
    with pytest.raises(DriftwaveError, match="unknown variable"):
        session.edit(settings.model_copy(update={"motion": settings.motion.model_copy(update={"zoom": "0:(1+zz)"})}))
    session.edit(settings.model_copy(update={"motion": settings.motion.model_copy(update={"translation_x": "0:(8)"})}))
    session.step()
    after = picture(session)
    source.close()
    (dx, dy), _ = cv2.phaseCorrelate(before.mean(axis=2), after.mean(axis=2))
    assert (dx, dy) == pytest.approx((8, 0), abs=0.5)


def test_a_lost_input_keeps_the_loop_going_and_says_why(tmp_path, preview):
    source = file_source(stepped_tones(tmp_path / "steps.wav"), loop=True)
    session = LiveSession(live_settings(), preview, source)
    session.step()
    source.envelopes.fail("the audio input stopped (unplugged?); keeping the last values")  # the device's path
    statuses = [session.step() for _ in range(3)]
    source.close()
    assert [status.frame for status in statuses] == [1, 2, 3]
    assert all("unplugged" in status.problem for status in statuses)


def test_quick_controls_freeze_hold_a_prompt_and_snapshot(tmp_path, preview):
    source = file_source(stepped_tones(tmp_path / "steps.wav"), loop=True)
    settings = live_settings(motion={"translation_x": "0:(3)"})
    session = LiveSession(settings, preview, source)
    session.step()
    session.control(frozen=True)
    frozen = picture(session)
    session.step()
    assert np.array_equal(picture(session), frozen)
    session.control(frozen=False)
    session.step()
    assert not np.array_equal(picture(session), frozen)
    path = session.snapshot(tmp_path / "snaps")
    assert np.array_equal(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), to_array(session.image))
    # holding the second prompt: a fresh session starts from its picture, not the first's
    held = LiveSession(settings, preview, source)
    held.control(prompt=1)
    held.step()
    first = LiveSession(settings, preview, source)
    first.step()
    source.close()
    assert not np.array_equal(picture(held), picture(first))


def test_a_track_that_ends_ends_the_session_unless_it_loops(tmp_path, preview):
    path = tmp_path / "short.wav"
    soundfile.write(path, np.zeros(RATE // 2, np.float32), RATE)
    source = file_source(path, loop=False)
    summary = LiveSession(live_settings(), preview, source).run(duration=60)  # the duration: a hang guard
    source.close()
    assert source.finished.is_set() and summary.seconds < 60
    looping = file_source(path, loop=True)
    played = LiveSession(live_settings(), preview, looping).run(
        duration=60,
        should_stop=lambda: looping.envelopes.frames > 15,  # 0.5 s is 10 audio frames
    )
    assert not looping.finished.is_set() and looping.envelopes.frames > 15 and played.seconds < 60
    looping.close()


def test_the_recording_keeps_picture_and_sound_in_sync(tmp_path, preview, monkeypatch):
    # silence with one loud burst at 1.0 s; the picture goes flat (contrast 0) while it sounds.
    # In sync means each is placed at the time it happened on the session's clock: a picture at
    # the slot after it was made, the sound where the tap heard it. Both are checked as such,
    # so a loaded machine (a slow frame, a late block) changes the times but not the result.
    samples = np.zeros(int(RATE * 2.0), np.float32)
    burst = slice(int(RATE * 1.0), int(RATE * 1.15))
    samples[burst] = 0.8 * np.sin(2 * np.pi * 1000 * np.arange(burst.stop - burst.start) / RATE)
    path = tmp_path / "burst.wav"
    soundfile.write(path, samples, RATE)
    pushed: list[tuple[int, int, float]] = []  # (track position, samples, when) of every block
    push = LiveEnvelopes.push

    def record(self, block):
        pushed.append((sum(size for _, size, _ in pushed), len(block), time.monotonic()))
        push(self, block)

    monkeypatch.setattr(LiveEnvelopes, "push", record)
    source = file_source(path, loop=False)
    settings = live_settings(motion={"contrast_schedule": "0:(1 - amp)", "strength_schedule": "0:(0.95)"})
    made: list[tuple[float, float, int]] = []  # (seconds, contrast, audio frame) of every picture

    def on_frame(status, image) -> None:
        gray = cv2.cvtColor(to_array(image), cv2.COLOR_RGB2GRAY).astype(float)
        made.append((status.seconds, gray.std(), status.audio_frame))

    session = LiveSession(settings, preview, source, on_frame=on_frame)
    video = tmp_path / "session.mp4"
    record_session(session, video, lambda: session.run(duration=1.8))
    source.close()
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(video), "-f", "rawvideo"]
    command += ["-pix_fmt", "gray", "-"]
    pixels = np.frombuffer(subprocess.run(command, capture_output=True, check=True).stdout, np.uint8)
    contrast = pixels.reshape(-1, 64 * 64).astype(float).std(axis=1)
    # the picture: the flattest one made read the burst's audio frame, and the video shows it
    # from the first frame slot at or after the moment it was made (slot k: newest made by k/fps)
    flattest = min(range(len(made)), key=lambda i: made[i][1])
    made_at, flat, audio_frame = made[flattest]
    assert audio_frame > int(1.0 * FPS) and flat < 0.2 * max(c for _, c, _ in made)
    shown = [max((i for i, m in enumerate(made) if m[0] <= k / FPS), default=0) for k in range(len(contrast))]
    slots = [k for k, i in enumerate(shown) if i == flattest]
    assert slots and slots[0] == int(np.ceil(made_at * FPS - 1e-9))
    assert contrast[slots].max() < 0.2 * contrast.max()
    # the sound: the burst where the tap put it, the tap's first block at the time it arrived
    decoded = tmp_path / "sound.wav"
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(video), str(decoded)]
    subprocess.run(command, check=True)
    sound, rate = soundfile.read(decoded)
    loud = np.flatnonzero(np.abs(sound) > 0.3)
    assert loud.size, "the recording has the burst"
    tap = source.envelopes.tap_started_at
    first, _, _ = min(pushed, key=lambda block: abs(block[2] - block[1] / RATE - tap))
    expected = tap - session.started + (burst.start - first) / RATE
    assert loud[0] / rate == pytest.approx(expected, abs=0.03)  # AAC: a few ms either way


def test_live_command_headless_records_and_reports(tmp_path):
    video, frames = tmp_path / "out.mp4", tmp_path / "frames"
    command = [sys.executable, str(ROOT / "main.py"), "live", "demo", "--headless", "--duration", "2"]
    command += ["--audio-file", str(ROOT / "presets" / "demo_track.flac"), "--record", str(video)]
    command += ["--frames-dir", str(frames), "--set", "backend=preview", "--set", "W=128", "--set", "H=128"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "frames in" in result.stdout and "fps" in result.stdout and "audio to frame" in result.stdout
    assert (frames / "latest.png").exists() and not list(frames.glob(".*"))
    log = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(video)], capture_output=True, text=True
    )
    assert "Audio:" in log.stderr and "Video: h264" in log.stderr


def test_no_input_and_no_track_is_a_clear_error(tmp_path):
    import sounddevice

    if any(device["max_input_channels"] > 0 for device in sounddevice.query_devices()):
        pytest.skip("this machine has an audio input")
    preset = tmp_path / "quiet.toml"
    preset.write_text('[model]\nbackend = "preview"\n')
    command = [sys.executable, str(ROOT / "main.py"), "live", str(preset), "--headless", "--duration", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "no audio input" in result.stderr and "--audio-file" in result.stderr and "Traceback" not in result.stderr
