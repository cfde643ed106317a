"""Rhythm: audio.onsets and audio.beats equal librosa's onset strength, tempo and beat tracker;
analyses are computed once and cached; none of it imports librosa or numba."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

import audio.envelopes
from audio import beats, onsets
from audio.envelopes import analysis_cache_dir, analyze_file, onset_hop
from audio.load import load_audio
from bench.audio import music
from engine.errors import collecting_notices
from engine.presets import settings_from_data

ROOT = Path(__file__).resolve().parent.parent
RATE = 44100
FILTERS = [{"name": "fLo", "f_center": 105, "f_width": 65}, {"name": "fHi", "f_center": 900, "f_width": 600}]


def click_track(bpm: float = 128.0, seconds: float = 12.0) -> np.ndarray:
    """Clicks at ``bpm`` with a few ms of timing jitter, over faint noise."""
    rng = np.random.default_rng(7)
    samples = 0.01 * rng.standard_normal(int(RATE * seconds))
    for when in np.arange(0.1, seconds - 0.1, 60 / bpm):
        start = int((when + rng.normal(0, 0.004)) * RATE)
        samples[start : start + 60] += 0.8
    return samples.astype(np.float32)


def accented_noise(seconds: float = 12.0) -> np.ndarray:
    """Noise with loud bursts at random places: no steady tempo to lock on to."""
    rng = np.random.default_rng(11)
    samples = 0.05 * rng.standard_normal(int(RATE * seconds))
    for start in rng.integers(0, len(samples) - 2000, 40):
        samples[start : start + 2000] *= 8
    return samples.astype(np.float32)


def song(seconds: float = 50.0, bpm: float = 124.0) -> np.ndarray:
    """The audio bench's stand-in for music (a kick on every beat, a hat between, a bass line,
    noise), one channel. 50 s: more onset frames than one block of audio.onsets' mel projection."""
    return music(seconds, bpm)[:, 0].astype(np.float32)


def demo_track() -> tuple[np.ndarray, int]:
    track = load_audio(ROOT / "presets" / "demo_track.flac")
    return track.samples, track.rate


@pytest.fixture(scope="module")
def librosa_beat():
    """librosa.beat itself, the reference (importing it compiles its numba kernels: slow, once)."""
    import librosa.beat

    return librosa.beat


SIGNALS = {"clicks": click_track, "noise": accented_noise, "song": song}


@pytest.mark.parametrize("signal", ["demo", "clicks", "noise", "song"])
def test_onsets_tempo_and_beats_equal_librosa(librosa_beat, signal):
    import librosa

    samples, rate = demo_track() if signal == "demo" else (SIGNALS[signal](), RATE)
    hop = onset_hop(rate)
    envelope = onsets.onset_strength(samples, rate, hop)  # as audio.envelopes computes it
    reference = librosa.onset.onset_strength(y=samples, sr=rate, hop_length=hop)
    assert envelope.dtype == reference.dtype == np.float32 and envelope.shape == reference.shape
    # the same steps in the same dtypes: equal to the bit here; float32 rounding is all BLAS could change
    assert np.abs(envelope - reference).max() <= 1e-4 * reference.max()

    win_length = librosa.time_to_frames(8.0, sr=rate, hop_length=hop).item()
    tempogram = librosa.feature.tempogram(onset_envelope=envelope, sr=rate, hop_length=hop, win_length=win_length)
    expected_mean = tempogram.mean(axis=-1)
    assert np.abs(beats.mean_tempogram(envelope, win_length) - expected_mean).max() <= 1e-13 * expected_mean.max()

    # ours from our envelope, librosa's from its own
    expected_tempo, expected_beats = librosa_beat.beat_track(onset_envelope=reference, sr=rate, hop_length=hop)
    tempo, found = beats.beat_track(envelope, rate, hop)
    assert tempo == float(expected_tempo[0])
    assert len(found) > 5
    assert np.array_equal(found, expected_beats)
    for tightness, trim in [(400.0, True), (100.0, False)]:  # the other knobs follow librosa too
        _, expected = librosa_beat.beat_track(
            onset_envelope=reference, sr=rate, hop_length=hop, bpm=tempo, tightness=tightness, trim=trim
        )
        assert np.array_equal(
            beats.beat_track(envelope, rate, hop, bpm=tempo, tightness=tightness, trim=trim)[1], expected
        )


def test_mel_filters_and_window_follow_librosa_and_scipy():
    import librosa
    from scipy import signal

    for rate in (8000, 22050, 44100, 48000, 96000):
        assert np.array_equal(onsets.mel_filters(rate, 2048), librosa.filters.mel(sr=rate, n_fft=2048, fmax=rate / 2))
    for length in (1, 2, 7, 256, 1378, 1500, 2048):
        assert np.array_equal(onsets.hann(length), signal.get_window("hann", length, fftbins=True))


def test_the_mean_tempogram_equals_librosas_mean():
    """For lengths below, at and across the transform's block of frames, silent stretches included."""
    import librosa

    rng = np.random.default_rng(5)
    for count in (1, 7, 8, 9, 255, 256, 257, 1000, 5001):
        envelope = rng.exponential(size=count).astype(np.float32)
        envelope[count // 3 : count // 2] = 0.0  # frames of no energy: librosa leaves their columns 0
        expected = librosa.feature.tempogram(onset_envelope=envelope, win_length=24).mean(axis=-1)
        assert np.abs(beats.mean_tempogram(envelope, 24) - expected).max() <= 1e-13 * expected.max(), count


def test_local_maxima_follow_librosa_localmax():
    import librosa

    rng = np.random.default_rng(3)
    for values in [rng.integers(0, 4, 200).astype(float), rng.standard_normal(50), np.array([1.0, 2.0, 2.0, 3.0])]:
        assert np.array_equal(beats.local_maxima(values), librosa.util.localmax(values))


def test_a_silent_envelope_has_no_beats():
    tempo, found = beats.beat_track(np.zeros(500, dtype=np.float32), RATE, 256)
    assert tempo == 0.0
    assert found.size == 0


# -- the analysis cache ---------------------------------------------------------------------


def write(path: Path, samples: np.ndarray) -> Path:
    soundfile.write(path, samples, RATE)
    return path


def settings_for(path: Path, filters=FILTERS, **values):
    return settings_from_data({"audio": {"file": str(path), "filters": filters, **values}}).audio


def entries() -> list[Path]:
    return sorted(analysis_cache_dir().glob("*.npz"))


def assert_same(first, second) -> None:
    assert list(first.values) == list(second.values)
    for name in first.values:
        assert np.array_equal(first.values[name], second.values[name]), name
    assert first.bpm == second.bpm
    assert first.beat_frames == second.beat_frames


def test_an_analysis_is_computed_once_then_read_from_the_cache(tmp_path, monkeypatch):
    path = write(tmp_path / "track.wav", click_track(seconds=4.0))
    settings = settings_for(path)
    first = analyze_file(path, settings, 60, 15)
    assert not first.from_cache
    [entry] = entries()
    written = entry.stat().st_mtime_ns

    def no_loading(*args, **kwargs):
        raise AssertionError("the cached analysis loaded the audio again")

    monkeypatch.setattr(audio.envelopes, "load_audio", no_loading)
    second = analyze_file(path, settings, 60, 15)
    assert second.from_cache
    assert_same(first, second)
    assert entries() == [entry]
    assert entry.stat().st_mtime_ns == written  # read, not written again

    copy = write(tmp_path / "same_sound_other_name.wav", click_track(seconds=4.0))  # the key is the content
    assert analyze_file(copy, settings_for(copy), 60, 15).from_cache


def test_other_filters_fps_or_bytes_make_new_entries(tmp_path):
    path = write(tmp_path / "track.wav", click_track(seconds=4.0))
    analyze_file(path, settings_for(path), 60, 15)
    wider = [FILTERS[0], {**FILTERS[1], "f_width": 800}]
    assert not analyze_file(path, settings_for(path, filters=wider), 60, 15).from_cache
    assert not analyze_file(path, settings_for(path), 60, 30).from_cache
    assert not analyze_file(path, settings_for(path), 60, 15, need={"fLo"}).from_cache
    assert len(entries()) == 4
    write(path, click_track(bpm=100.0, seconds=4.0))  # same name, new sound
    changed = analyze_file(path, settings_for(path), 60, 15)
    assert not changed.from_cache
    assert len(entries()) == 5


def test_a_damaged_entry_is_computed_again_and_replaced(tmp_path):
    path = write(tmp_path / "track.wav", click_track(seconds=4.0))
    settings = settings_for(path)
    first = analyze_file(path, settings, 60, 15)
    [entry] = entries()
    for damage in (b"not a zip file", entry.read_bytes()[:200]):  # garbage, then a truncated entry
        entry.write_bytes(damage)
        again = analyze_file(path, settings, 60, 15)
        assert not again.from_cache
        assert_same(first, again)
        assert analyze_file(path, settings, 60, 15).from_cache  # the rewritten entry reads back
    assert entries() == [entry]
    assert not list(analysis_cache_dir().glob("*.tmp"))


def test_a_cached_analysis_gives_its_notices_again(tmp_path):
    path = write(tmp_path / "short.wav", click_track(seconds=2.0))
    for cached in (False, True):
        with collecting_notices() as notices:
            result = analyze_file(path, settings_for(path), 40, 10, need={"fLo"})
        assert result.from_cache is cached
        assert any("ends before the animation" in notice for notice in notices)


def test_audio_analyze_and_inspect_import_no_librosa_numba_or_scipy_signal(tmp_path):
    path = write(tmp_path / "four_seconds.wav", click_track(seconds=4.0))
    script = (
        "import contextlib, io, json, sys, main\n"
        "def imported():\n"
        "    return {name: name in sys.modules for name in ('librosa', 'numba', 'scipy.signal')}\n"
        f"status = main.main(['audio', 'analyze', {str(path)!r}, '--filter', 'fLo:105:65', '--json'])\n"
        "print(json.dumps({'status': status, **imported()}))\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    status = main.main(['inspect', 'demo'])\n"
        "print(json.dumps({'status': status, **imported()}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr
    analysis, after_analyze, after_inspect = (json.loads(line) for line in result.stdout.strip().splitlines()[-3:])
    assert analysis["beats"] and 120 < analysis["bpm"] < 136
    expected = {"status": 0, "librosa": False, "numba": False, "scipy.signal": False}
    assert after_analyze == after_inspect == expected
