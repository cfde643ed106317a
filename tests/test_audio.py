"""Audio: bandpass envelopes on synthetic signals, frame alignment, tempo, streaming, sources."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile
from scipy import signal

from audio.envelopes import analyze, design_filter, frame_starts, window_rms
from audio.live import FileSource, LiveEnvelopes, MicrophoneSource
from audio.load import AudioError, load_audio, mono
from audio.stream import StreamingEnvelopes
from engine.errors import SettingsError, collecting_notices
from engine.presets import settings_from_data
from engine.settings import AudioFilter

RATE = 44100
LOW, HIGH = AudioFilter(name="fLo", f_center=105, f_width=65), AudioFilter(name="fHi", f_center=900, f_width=600)


def write(tmp_path: Path, samples: np.ndarray, name: str = "track.wav", rate: int = RATE) -> Path:
    path = tmp_path / name
    soundfile.write(path, samples.astype(np.float32), rate)
    return path


def audio_settings(path: Path, **values):
    return settings_from_data(
        {"audio": {"file": str(path), "filters": [LOW.model_dump(), HIGH.model_dump()], **values}}
    ).audio


def tone(frequency: float, seconds: float = 2.0) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * frequency * np.arange(int(RATE * seconds)) / RATE)


def raw_envelopes(path: Path, fps: float = 30, frames: int = 60, **values):
    settings = audio_settings(path, normalize="none", **values)
    return analyze(load_audio(path), settings, frames, fps, need={"fLo", "fHi", "amp"}).values


@pytest.mark.parametrize(("frequency", "driven", "quiet"), [(100, "fLo", "fHi"), (1000, "fHi", "fLo")])
def test_a_tone_drives_its_band_and_not_the_other(tmp_path, frequency, driven, quiet):
    values = raw_envelopes(write(tmp_path, tone(frequency)))
    steady = slice(5, 55)
    assert values[driven][steady].mean() > 0.25  # RMS of a 0.5 sine is 0.35
    assert values[quiet][steady].mean() < 0.02 * values[driven][steady].mean()


def clicks(bpm: float, seconds: float, start: float = 0.0) -> tuple[np.ndarray, list[float]]:
    samples = np.zeros(int(RATE * seconds))
    times = list(np.arange(start, seconds - 0.05, 60 / bpm))
    for when in times:
        index = round(when * RATE)
        samples[index : index + 40] = 0.8  # a 1 ms click
    return samples, times


@pytest.mark.parametrize("fps", [24, 25, 30])
@pytest.mark.parametrize("offset", [0.0, 0.37])
def test_each_click_peaks_on_the_frame_whose_window_holds_it(tmp_path, fps, offset):
    samples, times = clicks(120, 6.0, start=0.013)
    path = write(tmp_path, samples)
    frames = int((6.0 - offset) * fps)
    amp = raw_envelopes(path, fps=fps, frames=frames, offset=offset)["amp"]
    expected = sorted({int(np.floor((when - offset) * fps)) for when in times if when >= offset})
    peaks = [i for i in range(frames) if amp[i] > 0.5 * amp.max()]
    assert peaks == [e for e in expected if e < frames]


def test_tempo_is_within_one_bpm(tmp_path):
    samples, _ = clicks(120, 12.0)
    settings = audio_settings(write(tmp_path, samples))
    result = analyze(load_audio(tmp_path / "track.wav"), settings, 300, 25, need={"bpm", "beat"})
    assert abs(result.bpm - 120) < 1
    assert len(result.beat_frames) >= 20 and np.allclose(np.diff(result.beat_frames), 12.5, atol=1)
    beat = result.values["beat"]
    first = result.beat_frames[0]
    assert beat[first] == 1.0 and beat[first + 6] < beat[first + 1]  # 1 on a beat, decaying to the next


def test_streaming_equals_offline(tmp_path):
    rng = np.random.default_rng(0)
    samples = (rng.standard_normal(RATE * 3) * 0.3).astype(np.float32)
    fps, frames = 24, 72
    starts = frame_starts(frames, fps, RATE)
    offline = np.stack(
        [window_rms(signal.sosfilt(design_filter(f, RATE).sos, samples), starts) for f in (LOW, HIGH)]
        + [window_rms(samples, starts)],
        axis=1,
    )
    stream = StreamingEnvelopes([LOW, HIGH], RATE, fps)
    rows, position = [], 0
    while position < len(samples):
        size = int(rng.integers(1, 3000))
        rows += stream.feed(samples[position : position + size])
        position += size
    np.testing.assert_allclose(np.array(rows), offline, atol=1e-6, rtol=0)


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    """Poll until ``condition()``; the deadline only guards against a hang."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_live_envelopes_never_block_and_follow_the_stream(tmp_path):
    samples = tone(100, 1.0).astype(np.float32)
    live = LiveEnvelopes([LOW, HIGH], RATE, 20)
    for start in range(0, len(samples), 512):
        live.push(samples[start : start + 512])  # returns at once: the worker does the filtering
    wait_for(lambda: live.frames >= 20, "20 envelope frames")
    live.close()
    assert live.frames == 20
    assert live.values()["fLo"] == pytest.approx(1.0, abs=0.05) and live.values()["fHi"] < 0.05


def test_file_source_plays_in_real_time(tmp_path, monkeypatch):
    track = load_audio(write(tmp_path, tone(1000, 1.0)))
    pushed: list[tuple[np.ndarray, float]] = []
    push = LiveEnvelopes.push

    def record(self, block):
        pushed.append((np.array(block, copy=True), time.monotonic()))
        push(self, block)

    monkeypatch.setattr(LiveEnvelopes, "push", record)
    speed, block = 4.0, 512
    created = time.monotonic()
    source = FileSource(track, [LOW, HIGH], fps=10, speed=speed, block=block)
    assert source.finished.wait(60)
    wait_for(lambda: source.envelopes.frames >= 10, "the track's 10 envelope frames")
    values = source.values()
    source.close()
    # the whole track, in order, in blocks of the asked size (the last one what is left) ...
    sizes = [len(samples) for samples, _ in pushed]
    assert sizes == [block] * (len(track.samples) // block) + [len(track.samples) % block]
    np.testing.assert_array_equal(np.concatenate([samples for samples, _ in pushed]), track.samples)
    # ... each block no earlier than its place in the track at 4x speed: paced, not dumped at once
    # (a loaded machine can only make blocks later, which is not bounded here)
    arrived = np.array([when for _, when in pushed]) - created
    due = np.cumsum([0, *sizes[:-1]]) / track.rate / speed
    assert np.all(arrived >= due) and due[-1] > 0.2
    assert source.envelopes.frames == 10
    assert values["fHi"] > 0.9 and values["fLo"] < 0.05


def test_no_microphone_is_a_clear_error():
    import sounddevice

    if any(device["max_input_channels"] > 0 for device in sounddevice.query_devices()):
        pytest.skip("this machine has an audio input")
    with pytest.raises(AudioError, match="no audio input is available") as caught:
        MicrophoneSource([LOW], fps=15)
    assert "audio devices" in caught.value.hint


# -- files ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg", ".mp3", ".m4a"])
def test_common_formats_load(tmp_path, suffix):
    wav = write(tmp_path, tone(440, 1.0), "source.wav")
    path = tmp_path / f"track{suffix}"
    if suffix in (".wav", ".flac", ".ogg"):
        soundfile.write(path, tone(440, 1.0).astype(np.float32), RATE)
    else:
        result = subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(wav), str(path)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            pytest.skip(f"this ffmpeg cannot write {suffix}: {result.stderr[-120:]}")
    track = load_audio(path)
    assert track.rate == RATE and track.seconds == pytest.approx(1.0, abs=0.06)
    spectrum = np.abs(np.fft.rfft(track.samples[: RATE // 2]))
    assert np.argmax(spectrum) * 2 == pytest.approx(440, abs=4)


@pytest.mark.parametrize("channels", [1, 2, 3, 6, 7, 8, 12])
def test_channels_are_mixed_to_their_mean_to_the_bit(tmp_path, channels):
    samples = np.random.default_rng(channels).uniform(-1, 1, (20_011, channels)).astype(np.float32)
    assert np.array_equal(mono(samples), samples.mean(axis=1))
    soundfile.write(tmp_path / "many.wav", samples, RATE, subtype="FLOAT")
    assert np.array_equal(load_audio(tmp_path / "many.wav").samples, samples.mean(axis=1))


def test_missing_empty_and_corrupt_files(tmp_path):
    with pytest.raises(AudioError, match="does not exist"):
        load_audio(tmp_path / "nope.wav")
    (tmp_path / "noise.mp3").write_bytes(b"this is not audio at all" * 100)
    with pytest.raises(AudioError, match="not an audio file"):
        load_audio(tmp_path / "noise.mp3")
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, np.float32), RATE)
    with pytest.raises(AudioError, match="holds no audio"):
        load_audio(tmp_path / "empty.wav")


def test_offset_past_the_end_and_frames_past_the_end(tmp_path):
    path = write(tmp_path, tone(100, 1.0))
    with pytest.raises(AudioError, match="past the end") as caught:
        analyze(load_audio(path), audio_settings(path, offset=3.0), 10, 10)
    assert caught.value.field == "audio.offset"
    with collecting_notices() as notices:
        values = analyze(load_audio(path), audio_settings(path), 20, 10, need={"fLo"}).values["fLo"]
    assert np.all(values[10:] == 0) and values[5] > 0
    assert notices == ["audio: track.wav ends before the animation; the last 10 frames read 0"]


def test_filter_band_outside_the_audible_range(tmp_path):
    path = write(tmp_path, tone(100, 1.0), rate=8000)
    settings = settings_from_data({"audio": {"filters": [{"name": "fAir", "f_center": 9000, "f_width": 1000}]}})
    with pytest.raises(AudioError, match="outside 0-4000 Hz") as caught:
        analyze(load_audio(path), settings.audio, 10, 10)
    assert "fAir" in caught.value.message


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ([{"name": "fLo", "f_center": 100, "f_width": 0}], "greater than 0"),
        (
            [{"name": "fLo", "f_center": 100, "f_width": 10}, {"name": "fLo", "f_center": 900, "f_width": 10}],
            "two filters are named",
        ),
        ([{"name": "t", "f_center": 100, "f_width": 10}], "built-in name"),
        ([{"name": "sin", "f_center": 100, "f_width": 10}], "built-in name"),
        ([{"name": "2x", "f_center": 100, "f_width": 10}], "not a usable variable name"),
    ],
)
def test_filter_settings_errors(filters, message):
    with pytest.raises(SettingsError, match=message):
        settings_from_data({"audio": {"filters": filters}})


# -- audio in runs ----------------------------------------------------------------------------------


def test_render_reads_envelopes_and_muxes_the_track_in_sync(tmp_path):
    from engine.backends import load_backend
    from engine.render import render
    from engine.settings import ModelSettings

    samples, _ = clicks(60, 4.0, start=1.0)  # clicks at 1, 2, 3 s
    path = write(tmp_path, samples)
    with collecting_notices():
        settings = settings_from_data(
            {
                "animation": {"max_frames": 20, "fps": 10},
                "image": {"W": 64, "H": 64},
                "motion": {"zoom": "0:(1 + 0.1*amp)"},
                "audio": {"file": str(path), "offset": 0.5},
                "batch": {"outdir": str(tmp_path / "out")},
                "prompts": {"0": "a drum"},
                "model": {"backend": "preview"},
            }
        )
        from engine.plan import compile_run

        zoom = compile_run(settings).values["motion.zoom"]
        result = render(settings, backend=load_backend(ModelSettings(backend="preview")))
    assert [i for i in range(20) if zoom[i] > 1.05] == [5, 15]  # clicks at 1 s and 2 s, offset 0.5 s, 10 fps
    decoded = subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-v",
            "error",
            "-i",
            str(result.video),
            "-f",
            "f32le",
            "-ac",
            "1",
            "-ar",
            str(RATE),
            "pipe:1",
        ],
        capture_output=True,
    ).stdout
    audio = np.abs(np.frombuffer(decoded, dtype=np.float32))
    first_click = np.argmax(audio > 0.3) / RATE
    assert first_click == pytest.approx(0.5, abs=0.03)  # 1 s into the track, less the 0.5 s offset


def test_beat_keyframes_use_the_detected_tempo(tmp_path):
    from engine.plan import compile_run

    samples, _ = clicks(120, 8.0)
    path = write(tmp_path, samples)
    with collecting_notices():
        settings = settings_from_data(
            {
                "animation": {"max_frames": 100, "fps": 10},
                "audio": {"file": str(path)},
                "motion": {"angle": "0:(0), 8b:(10)"},
                "prompts": {"0": "a", "4b": "b"},
            }
        )
        plan = compile_run(settings)
    assert plan.timeline.bpm == pytest.approx(120, abs=1)
    assert plan.values["motion.angle"][40] == pytest.approx(10, abs=0.3)  # 8 beats at 120 BPM = 4 s = frame 40
    assert plan.prompts.keys[1].position == pytest.approx(20, abs=0.3)
