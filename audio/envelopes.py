"""Offline envelopes: every filter over the whole track at once, one value per frame.

Frame ``i`` at ``fps`` covers [offset + i/fps, offset + (i+1)/fps) seconds of the track; its
envelope is the RMS of the filtered signal over those samples, then normalised to 0..1 (peak,
99th percentile or none) and optionally smoothed (attack/release in ms). Frames past the end
of the track are 0, with one notice.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audio.beats import beat_track
from audio.iir import SosFilter, butter_sos
from audio.load import AudioError, Track, load_audio
from audio.onsets import onset_strength
from engine.errors import collecting_notices, notify
from engine.settings import AudioFilter, AudioSettings

BUILT_IN = ("amp", "onset", "beat", "bpm")


@dataclass(frozen=True)
class BandFilter:
    name: str
    sos: np.ndarray  # second-order sections, float64
    band: tuple[float, float]
    run: SosFilter  # sosfilt's recurrence over these sections: run(samples, state) -> (filtered, state)


def design_filter(spec: AudioFilter, rate: int, *, field: str = "audio.filters") -> BandFilter:
    """A Butterworth bandpass f_center ± f_width/2, clipped to (0, Nyquist)."""
    low, high = band_edges(spec, rate, field=field)
    nyquist = rate / 2
    if low <= 0:
        sos = butter_sos(spec.order, high, "lowpass", rate)
    elif high >= nyquist * 0.999:
        sos = butter_sos(spec.order, low, "highpass", rate)
    else:
        sos = butter_sos(spec.order, (low, high), "bandpass", rate)
    return BandFilter(spec.name, sos, (low, high), SosFilter(sos))


def band_edges(spec: AudioFilter, rate: int, *, field: str = "audio.filters") -> tuple[float, float]:
    """``spec``'s band clipped to (0, Nyquist); an AudioError naming the filter when it lies outside."""
    nyquist = rate / 2
    low, high = spec.f_center - spec.f_width / 2, spec.f_center + spec.f_width / 2
    if low >= nyquist * 0.999 or high <= 0:
        raise AudioError(
            f"filter {spec.name}: the band {low:g}-{high:g} Hz lies outside 0-{nyquist:g} Hz "
            f"(half the track's {rate} Hz sample rate)",
            field=field,
            hint=f"give {spec.name} an f_center below {nyquist:g} Hz",
        )
    return max(low, 0.0), min(high, nyquist * 0.999)


def frame_starts(frames: int, fps: float, rate: int, offset: float = 0.0) -> np.ndarray:
    """First sample of each frame's window, and one past the last: ``frames + 1`` indices."""
    times = offset + np.arange(frames + 1) / fps
    return np.floor(times * rate + 1e-6).astype(np.int64)


def window_rms(samples: np.ndarray, starts: np.ndarray, *, overwrite: bool = False) -> np.ndarray:
    """RMS of ``samples`` over each [starts[i], starts[i+1]); what lies past the end counts as 0.

    ``overwrite`` lets it square ``samples`` in place (a filter's output nobody else reads).
    """
    end = min(int(starts[-1]), len(samples))
    used = samples[:end]
    squares = np.square(used, out=used) if overwrite else np.square(used)
    firsts = starts[:-1]
    inside = (firsts < end) & (firsts >= 0)
    sums = np.zeros(len(firsts))
    if inside.any():
        indices = firsts[inside]
        partial = np.add.reduceat(squares, indices, dtype=np.float64)
        partial[np.append(indices[1:] == indices[:-1], False)] = 0.0  # an empty window reads one element
        sums[inside] = partial
    return np.sqrt(sums / np.maximum(np.diff(starts), 1))


def normalise(values: np.ndarray, mode: str) -> np.ndarray:
    if mode == "none" or values.size == 0:
        return values
    reference = values.max() if mode == "peak" else np.percentile(values, 99)
    return np.clip(values / reference, 0.0, 1.0) if reference > 0 else np.zeros_like(values)


def smooth(values: np.ndarray, fps: float, attack_ms: float, release_ms: float) -> np.ndarray:
    """One-pole follower: rises with the attack time, falls with the release time."""
    if attack_ms <= 0 and release_ms <= 0:
        return values
    rise = math.exp(-1000.0 / (attack_ms * fps)) if attack_ms > 0 else 0.0
    fall = math.exp(-1000.0 / (release_ms * fps)) if release_ms > 0 else 0.0
    out = np.empty_like(values)
    level = 0.0
    for index, value in enumerate(values):
        coefficient = rise if value > level else fall
        level = coefficient * level + (1 - coefficient) * value
        out[index] = level
    return out


@dataclass
class Analysis:
    """Per-frame audio variables of one run."""

    values: dict[str, np.ndarray] = field(default_factory=dict)
    bpm: float | None = None
    beat_frames: list[int] = field(default_factory=list)
    from_cache: bool = False  # read back from analyze_file's cache, not computed


def analyze(
    track: Track,
    settings: AudioSettings,
    frames: int,
    fps: float,
    *,
    need: set[str] | None = None,
) -> Analysis:
    """Envelopes of every filter (and ``amp``/``onset``/``beat``/``bpm`` when in ``need``)."""
    need = needed(settings, need)
    starts = frame_starts(frames, fps, track.rate, settings.offset)
    if settings.offset >= track.seconds:
        raise AudioError(
            f"offset {settings.offset:g} s is past the end of {track.path.name} ({track.seconds:.2f} s)",
            field="audio.offset",
            hint=f"use an offset below {track.seconds:.2f}",
        )
    past_end = int(np.sum(starts[1:] > len(track.samples)))
    if past_end:
        notify(f"audio: {track.path.name} ends before the animation; the last {past_end} frames read 0")
    result = Analysis()
    wanted = [spec for spec in settings.filters if spec.name in need]
    for spec in wanted:
        band_edges(spec, track.rate)  # a bad band stops the analysis before any of it runs

    def envelope(band: BandFilter) -> np.ndarray:  # matrix products release the GIL: filters run in parallel
        filtered, _ = band.run(track.samples, out=np.empty(len(track.samples), dtype=np.float32))
        return _shape(window_rms(filtered, starts, overwrite=True), settings, fps)

    with ThreadPoolExecutor(max_workers=(os.cpu_count() or 1) + 1) as pool:  # the rhythm beside the filters
        wants_rhythm = need & {"onset", "beat"} or ("bpm" in need and not settings.bpm)
        rhythm = pool.submit(_rhythm, track, starts) if wants_rhythm else None
        bands = [design_filter(spec, track.rate) for spec in wanted]
        result.values.update(zip((band.name for band in bands), pool.map(envelope, bands), strict=True))
        if "amp" in need:
            result.values["amp"] = _shape(window_rms(track.samples, starts), settings, fps)
        if rhythm is not None:
            onset, beats, tempo = rhythm.result()
            result.values["onset"] = onset
            result.values["beat"] = beat_ramp(beats, frames)
            result.bpm, result.beat_frames = tempo, beats
    if settings.bpm:
        result.bpm = settings.bpm
    return result


def _shape(values: np.ndarray, settings: AudioSettings, fps: float) -> np.ndarray:
    return smooth(normalise(values, settings.normalize), fps, settings.attack_ms, settings.release_ms)


def _rhythm(track: Track, starts: np.ndarray) -> tuple[np.ndarray, list[int], float]:
    """Onset strength per frame (its peak in the window), beat frames and the global tempo."""
    hop = onset_hop(track.rate)
    envelope = onset_strength(track.samples, track.rate, hop)
    tempo, beat_positions = beat_track(envelope, track.rate, hop)
    onset_samples = np.arange(len(envelope)) * hop
    frame_of = np.searchsorted(starts, onset_samples, side="right") - 1
    frames = len(starts) - 1
    onset = np.zeros(frames)
    inside = (frame_of >= 0) & (frame_of < frames)
    np.maximum.at(onset, frame_of[inside], envelope[inside])
    beat_frames = np.searchsorted(starts, beat_positions * hop, side="right") - 1
    beats = sorted({int(b) for b in beat_frames if 0 <= b < frames})
    return normalise(onset, "peak"), beats, tempo


def onset_hop(rate: int) -> int:
    """Samples between onset-strength frames: a power of two near 172 frames a second (~6 ms)."""
    return 2 ** max(round(math.log2(rate / 172.0)), 6)


def beat_ramp(beats: list[int], frames: int) -> np.ndarray:
    """1 on each beat frame, falling linearly to 0 at the next beat."""
    ramp = np.zeros(frames)
    for index, beat in enumerate(beats):
        following = beats[index + 1] if index + 1 < len(beats) else frames
        span = max(following - beat, 1)
        ramp[beat:following] = 1.0 - np.arange(following - beat) / span
    return ramp


def needed(settings: AudioSettings, need: set[str] | None) -> set[str]:
    """The variables to compute: ``need``, or every filter and built-in when it is None."""
    return set(BUILT_IN) | {f.name for f in settings.filters} if need is None else set(need)


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "driftwave"


def analysis_cache_dir() -> Path:
    """Where analyses are kept: ``$DRIFTWAVE_ANALYSIS_CACHE``, else ``<cache dir>/analysis``."""
    return Path(os.environ.get("DRIFTWAVE_ANALYSIS_CACHE") or _cache_dir() / "analysis")


ANALYSIS_VERSION = 2  # part of every cache key: bump it when the analysis computes anything differently


def analyze_file(
    path: str | Path,
    settings: AudioSettings,
    frames: int,
    fps: float,
    *,
    need: set[str] | None = None,
    field: str = "audio.file",
) -> Analysis:
    """:func:`analyze` of the track at ``path``, computed once per content, settings and frames.

    The key is the sha256 of the file's bytes and of everything else that shapes the result
    (the audio settings but the file's name, frames, fps, the variables needed); the entry is
    an .npz under :func:`analysis_cache_dir`, written atomically. A damaged entry is computed
    again and replaced; the notices of the first analysis are given again on each read.
    """
    path, need = Path(path), needed(settings, need)
    entry = cache_entry(path, settings, frames, fps, need)
    cached = _read_entry(entry) if entry else None
    if cached is not None:
        analysis, notices = cached
    else:
        with collecting_notices() as notices:
            analysis = analyze(load_audio(path, field=field), settings, frames, fps, need=need)
        if entry:
            _write_entry(entry, analysis, notices)
    for notice in notices:
        notify(notice)
    return analysis


def cache_entry(path: Path, settings: AudioSettings, frames: int, fps: float, need: set[str]) -> Path | None:
    """The cache file of this analysis, or None when the track cannot be read (load_audio says why)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as track:
            while chunk := track.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    inputs = {
        "version": ANALYSIS_VERSION,
        "audio": settings.model_dump(mode="json", exclude={"file"}),
        "frames": frames,
        "fps": fps,
        "need": sorted(need),
    }
    digest.update(json.dumps(inputs, sort_keys=True).encode())
    return analysis_cache_dir() / f"{digest.hexdigest()}.npz"


def _read_entry(entry: Path) -> tuple[Analysis, list[str]] | None:
    try:
        with open(entry, "rb") as handle, np.load(handle, allow_pickle=False) as stored:  # ours to close
            names = [str(name) for name in stored["names"]]
            values = {name: stored[f"value_{name}"] for name in names}
            bpm = float(stored["bpm"])
            beat_frames = [int(frame) for frame in stored["beat_frames"]]
            notices = [str(notice) for notice in stored["notices"]]
    except (OSError, ValueError, TypeError, KeyError, EOFError, zipfile.BadZipFile):  # missing or damaged: redo
        return None
    return Analysis(values, None if math.isnan(bpm) else bpm, beat_frames, from_cache=True), notices


def _write_entry(entry: Path, analysis: Analysis, notices: list[str]) -> None:
    arrays = {f"value_{name}": values for name, values in analysis.values.items()}
    arrays |= {
        "names": np.array(list(analysis.values), dtype=str),
        "bpm": np.array(math.nan if analysis.bpm is None else analysis.bpm),
        "beat_frames": np.array(analysis.beat_frames, dtype=np.int64),
        "notices": np.array(notices, dtype=str),
    }
    temporary = None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=entry.parent, prefix=entry.stem, suffix=".tmp", delete=False) as out:
            temporary = Path(out.name)
            np.savez(out, **arrays)
        os.replace(temporary, entry)  # readers see the old entry or the whole new one, never a part
    except OSError:  # a cache that cannot be written (read-only, full disk) only costs the next run time
        if temporary is not None:
            temporary.unlink(missing_ok=True)


def analyze_settings(settings, frames: int, fps: float, need: set[str] | None = None) -> Analysis | None:
    """The analysis for a run's settings, or None when the preset has no audio file."""
    if not settings.audio.file:
        return None
    return analyze_file(settings.audio.file, settings.audio, frames, fps, need=need)
