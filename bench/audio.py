"""Audio: envelopes, beat tracking and `main.py audio analyze` end to end, against their baselines.

Offline envelopes, ours (audio.envelopes.analyze): 8 filters over a 5-minute 44.1 kHz track,
each over the whole signal at once (audio.iir: sosfilt's recurrence in float64 through matrix
products, filters in parallel threads), RMS per frame with one reduceat. Baseline, side by side
on the same signal: a straightforward per-frame loop (``scipy.signal.sosfilt`` of each frame's
window with the carried state, float64, then its RMS). Both give the same values (checked).
Streaming: one 512-sample block through 8 filters, as a share of the block's duration.

Rhythm, on a 4-minute track (~41,000 onset frames): our onset strength (audio.onsets) against
``librosa.onset.onset_strength``, our tempo (audio.beats, the mean tempogram through one inverse
FFT) against ``librosa.feature.tempo``, and our beat tracker against ``librosa.beat.beat_track``
given the same tempo (after the numba compile its import costs); each a median after a warm-up
call, each checked equal, ours from our envelope and librosa's from its own.

End to end, each a fresh process: ``main.py audio analyze`` of a generated 4-minute 44.1 kHz
stereo wav with 2 filters, cold (a new XDG_CACHE_HOME and no bytecode: the first run after
install), warm (bytecode written, analysis cache empty) and cached (the analysis read back); and
``main.py inspect demo`` with an empty and a filled analysis cache. CPU seconds are given next
to wall seconds: on a shared machine the wall time is the CPU time plus the wait for a core.

Run: .venv/bin/python bench/audio.py [--json] [--repeats N]
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
from scipy import signal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from audio.envelopes import analyze, design_filter, frame_starts, onset_hop
from audio.load import Track
from audio.stream import StreamingEnvelopes
from bench.common import arguments, median_seconds, report
from engine.settings import AudioFilter, AudioSettings

ROOT = Path(__file__).resolve().parent.parent
RATE, SECONDS, FPS = 44100, 300, 30
TRACK_SECONDS = 240  # the end-to-end track: 4 minutes
FILTERS = [
    AudioFilter(name=f"f{index}", f_center=centre, f_width=centre * 0.6)
    for index, centre in enumerate([60, 120, 250, 500, 1000, 2000, 4000, 8000])
]


def ours(samples: np.ndarray) -> np.ndarray:
    """The engine's own path: audio.envelopes.analyze (filters in parallel threads)."""
    track = Track(samples, RATE, Path("bench.wav"))
    settings = AudioSettings(filters=FILTERS, normalize="none")
    values = analyze(track, settings, SECONDS * FPS, FPS, need={f.name for f in FILTERS}).values
    return np.stack([values[f.name] for f in FILTERS])


def baseline(samples: np.ndarray, starts: np.ndarray) -> np.ndarray:
    bands = [design_filter(f, RATE) for f in FILTERS]
    states = [np.zeros((band.sos.shape[0], 2)) for band in bands]
    out = np.zeros((len(bands), len(starts) - 1))
    for frame in range(len(starts) - 1):
        window = samples[starts[frame] : starts[frame + 1]]
        for index, band in enumerate(bands):
            filtered, states[index] = signal.sosfilt(band.sos, window, zi=states[index])
            out[index, frame] = np.sqrt(np.mean(np.square(filtered, dtype=np.float64)))
    return out


def music(seconds: int, bpm: float = 124.0) -> np.ndarray:
    """A stereo stand-in for a song: a kick on every beat, a hat between, a bass line, noise."""
    rng = np.random.default_rng(1)
    time_axis = np.arange(RATE * seconds) / RATE
    mix = 0.03 * rng.standard_normal(len(time_axis))
    mix += 0.15 * np.sin(2 * np.pi * 55 * time_axis) * (1 + np.sin(2 * np.pi * time_axis * bpm / 240))
    kick = np.sin(2 * np.pi * 60 * np.arange(4000) / RATE) * np.exp(-np.arange(4000) / 800)
    hat = rng.standard_normal(600) * np.exp(-np.arange(600) / 120)
    for beat in np.arange(0.05, seconds - 0.5, 60 / bpm):
        start = int(beat * RATE)
        mix[start : start + len(kick)] += 0.7 * kick
        half = start + int(30 / bpm * RATE)
        mix[half : half + len(hat)] += 0.2 * hat
    mix /= np.abs(mix).max() * 1.1
    return np.stack([mix, np.roll(mix, 40)], axis=1)


def rhythm(repeats: int) -> dict:
    """Our onset strength, tempo and tracker against librosa's, on one 4-minute track."""
    import librosa

    from audio import beats, onsets

    samples = music(TRACK_SECONDS).mean(axis=1).astype(np.float32)
    hop = onset_hop(RATE)
    onset_ours = median_seconds(lambda _: onsets.onset_strength(samples, RATE, hop), repeats)
    onset_librosa = median_seconds(lambda _: librosa.onset.onset_strength(y=samples, sr=RATE, hop_length=hop), repeats)
    reference = librosa.onset.onset_strength(y=samples, sr=RATE, hop_length=hop)
    envelope = onsets.onset_strength(samples, RATE, hop)
    onset_error = float(np.abs(envelope - reference).max() / reference.max())
    assert onset_error <= 1e-4, "the onset envelopes differ"

    tempo_ours = median_seconds(lambda _: beats.tempo(envelope, RATE, hop), repeats)
    tempo_librosa = median_seconds(
        lambda _: librosa.feature.tempo(onset_envelope=reference, sr=RATE, hop_length=hop), repeats
    )
    expected_bpm = float(librosa.feature.tempo(onset_envelope=reference, sr=RATE, hop_length=hop)[0])
    bpm = beats.tempo(envelope, RATE, hop)
    assert bpm == expected_bpm, "the tempi differ"

    started = time.perf_counter()
    import librosa.beat  # its numba kernels compile here, in every process

    compile_seconds = time.perf_counter() - started
    tracker_ours = median_seconds(lambda _: beats.beat_track(envelope, RATE, hop, bpm=bpm), repeats)
    tracker_librosa = median_seconds(
        lambda _: librosa.beat.beat_track(onset_envelope=reference, sr=RATE, hop_length=hop, bpm=bpm), repeats
    )
    found = beats.beat_track(envelope, RATE, hop)[1]
    expected = librosa.beat.beat_track(onset_envelope=reference, sr=RATE, hop_length=hop)[1]
    assert np.array_equal(found, expected), "the beats differ"
    return {
        "onset_frames": len(envelope),
        "onset_ours_ms": onset_ours * 1e3,
        "onset_librosa_ms": onset_librosa * 1e3,
        "onset_max_error": onset_error,
        "tempo_ours_ms": tempo_ours * 1e3,
        "tempo_librosa_ms": tempo_librosa * 1e3,
        "bpm": bpm,
        "tracker_ours_ms": tracker_ours * 1e3,
        "tracker_librosa_ms": tracker_librosa * 1e3,
        "librosa_beat_import_s": compile_seconds,
    }


def timed(command: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of ``main.py command`` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *command], env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def medians(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def end_to_end(repeats: int) -> dict:
    """`audio analyze` of a 4-minute track and `inspect demo`, cold, warm and cached."""
    scratch = Path(tempfile.mkdtemp(prefix="driftwave-bench-"))
    try:
        track = scratch / "four_minutes.wav"
        soundfile.write(track, music(TRACK_SECONDS), RATE, subtype="PCM_16")
        env = {key: value for key, value in os.environ.items() if not key.startswith("DRIFTWAVE_")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed program has its bytecode: cached here
        env |= {"XDG_CACHE_HOME": str(scratch / "cache"), "PYTHONPYCACHEPREFIX": str(scratch / "pycache")}
        analyze_command = ["audio", "analyze", str(track), "--filter", "fLo:105:65", "--filter", "fHi:900:600"]
        fresh = iter(range(1000))

        def fresh_analysis() -> dict:  # the bytecode stays, the analysis cache starts empty
            return env | {"DRIFTWAVE_ANALYSIS_CACHE": str(scratch / f"analysis{next(fresh)}")}

        cold = timed(analyze_command, env)  # nothing cached: the bytecode is written
        warm = medians([timed(analyze_command, fresh_analysis()) for _ in range(repeats)])
        cached = medians([timed(analyze_command, env) for _ in range(repeats)])  # the cold run's entry
        inspect_cold = medians([timed(["inspect", "demo"], fresh_analysis()) for _ in range(repeats)])
        timed(["inspect", "demo"], env)  # fills env's analysis cache with the demo's
        inspect_warm = medians([timed(["inspect", "demo"], env) for _ in range(repeats)])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = {}
    for name, (wall, cpu) in [("cold", cold), ("warm", warm), ("cached", cached)]:
        result |= {
            f"analyze_{name}_s": wall,
            f"analyze_{name}_cpu_s": cpu,
            f"analyze_{name}_realtime": TRACK_SECONDS / wall,
        }
    for name, (wall, cpu) in [("cold", inspect_cold), ("warm", inspect_warm)]:
        result |= {f"inspect_demo_{name}_s": wall, f"inspect_demo_{name}_cpu_s": cpu}
    return result


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (default 3)")
    options = parser.parse_args()
    load_before = os.getloadavg()[0]
    rng = np.random.default_rng(0)
    samples = (rng.standard_normal(RATE * SECONDS) * 0.2).astype(np.float32)
    starts = frame_starts(SECONDS * FPS, FPS, RATE)

    ours_time = median_seconds(lambda _: ours(samples), 5)
    started = time.perf_counter()
    slow = baseline(samples, starts)
    base_time = time.perf_counter() - started
    assert np.allclose(ours(samples), slow, rtol=1e-4, atol=1e-6), "the two paths disagree"

    stream = StreamingEnvelopes(FILTERS, RATE, FPS)
    blocks = [samples[i : i + 512] for i in range(0, RATE * 20, 512)]
    started = time.perf_counter()
    for block in blocks:
        stream.feed(block)
    per_block = (time.perf_counter() - started) / len(blocks)
    block_seconds = 512 / RATE

    beats = rhythm(options.repeats)
    whole = end_to_end(options.repeats)
    load = (load_before, os.getloadavg()[0])

    print(f"load average {load[0]:.1f} before, {load[1]:.1f} after, on {os.cpu_count()} cores")
    print(f"8 filters, {SECONDS // 60}-minute track at {RATE} Hz, {FPS} fps")
    print(f"  per-frame loop (baseline)    {base_time:7.2f} s = {SECONDS / base_time:6.0f}x real time")
    print(
        f"  whole signal (ours, median)  {ours_time:7.2f} s = {SECONDS / ours_time:6.0f}x real time   "
        f"(target >= 300x; {base_time / ours_time:.1f}x the baseline)"
    )
    print(
        f"  streaming, one 512-sample block: {per_block * 1e3:.3f} ms = {per_block / block_seconds:.1%} of the "
        f"block's {block_seconds * 1e3:.1f} ms   (target < 5%)"
    )
    print(f"rhythm of a {TRACK_SECONDS // 60}-minute track, {beats['onset_frames']} onset frames")
    print(
        f"  onset strength: ours {beats['onset_ours_ms']:7.0f} ms, librosa {beats['onset_librosa_ms']:7.0f} ms "
        f"(largest difference {beats['onset_max_error']:.1e} of the envelope's peak)"
    )
    print(
        f"  tempo:          ours {beats['tempo_ours_ms']:7.0f} ms, librosa {beats['tempo_librosa_ms']:7.0f} ms "
        f"(both {beats['bpm']:.2f} BPM)"
    )
    print(
        f"  beat tracker:   ours {beats['tracker_ours_ms']:7.1f} ms, librosa {beats['tracker_librosa_ms']:7.1f} ms "
        f"(+ {beats['librosa_beat_import_s']:.1f} s to import librosa.beat: its numba compile)"
    )
    print(f"main.py audio analyze, {TRACK_SECONDS // 60}-minute 44.1 kHz stereo wav, 2 filters (a fresh process each)")
    labels = {"cold": "first run (nothing cached)", "warm": "warm (analysis not cached)", "cached": "analysis cached"}
    for name, label in labels.items():
        print(
            f"  {label:28s} {whole[f'analyze_{name}_s']:6.2f} s ({whole[f'analyze_{name}_cpu_s']:5.2f} s CPU) = "
            f"{whole[f'analyze_{name}_realtime']:6.0f}x real time"
        )
    print("  (targets: first run <= 8 s, warm <= 3 s = 80x real time)")
    print(
        f"main.py inspect demo: analysis not cached {whole['inspect_demo_cold_s']:.2f} s "
        f"({whole['inspect_demo_cold_cpu_s']:.2f} s CPU), cached {whole['inspect_demo_warm_s']:.2f} s "
        f"({whole['inspect_demo_warm_cpu_s']:.2f} s CPU)   (target <= 1.5 s)"
    )
    envelopes = {
        "ours_ms": ours_time * 1e3,
        "baseline_ms": base_time * 1e3,
        "speedup": base_time / ours_time,
        "realtime": SECONDS / ours_time,
        "stream_block_share": per_block / block_seconds,
    }
    report({**envelopes, **beats, **whole, "load_average": load}, options.json)


if __name__ == "__main__":
    main()
