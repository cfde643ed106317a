"""Tempo and beats: librosa.feature.tempo and librosa.beat.beat_track (Ellis 2007), in plain numpy.

``beat_track`` gives the same tempo and beat frames as ``librosa.beat.beat_track`` (static
tempo, ``sparse=True``, frames). The tracker is a port of librosa 0.11's ``__beat_tracker`` and
its helpers, step for step, in the same dtypes and summation orders. Why a port: importing
``librosa.beat`` compiles its numba kernels eagerly and ``__beat_local_score`` is declared
``cache=False``, so every process paid seconds of JIT compile before its first beat; numpy
needs none, and the dynamic program runs half a beat of frames at a time (every predecessor
lies at least half a beat back).

The tempo is ``librosa.feature.tempo`` (what beat_track calls), ported too, so that no analysis
imports librosa. Its mean tempogram is librosa's to ~1e-15, computed with half the FFTs and
without the tempogram (``mean_tempogram``): librosa's two FFTs along the strided axis of all
frames, at our onset rate (~172 frames/s, an 8 s window of 1378 frames), took longer than
everything else together.
"""

from __future__ import annotations

import math
import os

import numpy as np

from audio.onsets import hann


def beat_track(
    onset_envelope: np.ndarray,
    sr: float,
    hop_length: int,
    *,
    start_bpm: float = 120.0,
    tightness: float = 100.0,
    trim: bool = True,
    bpm: float | None = None,
) -> tuple[float, np.ndarray]:
    """(tempo in BPM, beat frame indices) of a 1-D onset strength envelope, as librosa's."""
    onset_envelope = np.asarray(onset_envelope)
    if onset_envelope.ndim != 1:
        raise ValueError(f"beat_track takes a 1-D onset envelope, not shape {onset_envelope.shape}")
    if not onset_envelope.any():
        return 0.0, np.array([], dtype=int)
    if bpm is None:
        bpm = tempo(onset_envelope, sr, hop_length, start_bpm=start_bpm)
    return bpm, np.flatnonzero(track_beats(onset_envelope, bpm, float(sr) / hop_length, tightness, trim))


def tempo(
    onset_envelope: np.ndarray,
    sr: float,
    hop_length: int,
    *,
    start_bpm: float = 120.0,
    std_bpm: float = 1.0,
    max_tempo: float = 320.0,
) -> float:
    """``librosa.feature.tempo(onset_envelope=..., start_bpm=...)``: the best period of the mean tempogram.

    The autocorrelation window is 8 s of onset frames (tempo's ``ac_size``); each period's
    mean over all frames is weighed by a log-normal prior around ``start_bpm`` (``std_bpm``
    octaves wide), periods of ``max_tempo`` BPM or faster excluded.
    """
    win_length = int(8.0 * sr) // hop_length  # librosa.time_to_frames(8.0, sr=sr, hop_length=hop_length)
    strength = mean_tempogram(onset_envelope, win_length)
    bpms = tempo_frequencies(win_length, sr, hop_length)
    logprior = -0.5 * ((np.log2(bpms) - np.log2(start_bpm)) / std_bpm) ** 2
    logprior[: int(np.argmax(bpms < max_tempo))] = -np.inf
    return float(bpms[np.argmax(np.log1p(1e6 * strength) + logprior)])


def tempo_frequencies(bins: int, sr: float, hop_length: int) -> np.ndarray:
    """``librosa.tempo_frequencies``: the BPM of each autocorrelation lag (lag 0: infinite)."""
    bpms = np.zeros(bins, dtype=np.float64)
    bpms[0] = np.inf
    bpms[1:] = 60.0 * sr / (hop_length * np.arange(1.0, bins))
    return bpms


TEMPOGRAM_BLOCK = 256  # frames a transform: 6 MB of spectrum


def mean_tempogram(onset_envelope: np.ndarray, win_length: int) -> np.ndarray:
    """``librosa.feature.tempogram(...).mean(axis=-1)``, through one inverse FFT in all.

    Each tempogram column is a frame's autocorrelation (the inverse FFT of its power spectrum)
    over its largest value, the one at lag 0: the frame's energy. The inverse FFT is linear, so
    the mean of the columns is the inverse FFT of the mean of the power spectra, each over its
    frame's energy: one forward FFT a frame, no inverse one, and the tempogram (450 MB for 4
    minutes) never held. Equal to librosa's mean to ~1e-15 of its largest value.
    """
    import scipy.fft

    frames = tempogram_frames(onset_envelope, win_length)
    window = hann(win_length)
    n_fft = scipy.fft.next_fast_len(2 * win_length - 1, real=True)  # librosa.autocorrelate's padding
    workers = min(os.cpu_count() or 1, 8)
    total = np.zeros(n_fft // 2 + 1)
    for start in range(0, len(frames), TEMPOGRAM_BLOCK):
        windowed = frames[start : start + TEMPOGRAM_BLOCK] * window
        spectrum = scipy.fft.rfft(windowed, n=n_fft, axis=-1, workers=workers)
        power = np.square(spectrum.real) + np.square(spectrum.imag)  # librosa.util.abs2
        energy = np.einsum("ij,ij->i", windowed, windowed)
        silent = energy < np.finfo(np.float64).tiny  # librosa leaves these columns as they are: ~0
        total += np.divide(1.0, energy, out=np.zeros_like(energy), where=~silent) @ power
    return scipy.fft.irfft(total, n=n_fft)[:win_length] / len(frames)


def tempogram_frames(onset_envelope: np.ndarray, win_length: int) -> np.ndarray:
    """The tempogram's frames, one a row: ``win_length`` onsets centred on each, the ends ramped to 0."""
    half = win_length // 2
    padded = np.pad(onset_envelope, (half, half), mode="linear_ramp", end_values=[0, 0])
    return np.lib.stride_tricks.sliding_window_view(padded, win_length)[: len(onset_envelope)]


def track_beats(onset_envelope: np.ndarray, bpm: float, frame_rate: float, tightness: float, trim: bool) -> np.ndarray:
    """librosa's ``__beat_tracker``: a boolean beat indicator per onset frame."""
    if bpm <= 0:
        raise ValueError(f"bpm={bpm} must be strictly positive")
    if tightness <= 0:
        raise ValueError("tightness must be strictly positive")
    frames_per_beat = float(np.round(frame_rate * 60.0 / bpm))
    # np.round(...) is float64, so numba dispatched librosa's kernels to their float64 loops:
    # the local score and the cumulative score are float64 even for a float32 envelope.
    localscore = local_score(normalize_onsets(onset_envelope).astype(np.float64), frames_per_beat)
    backlink, cumscore = beat_track_dp(localscore, frames_per_beat, tightness)
    beats = np.zeros(len(onset_envelope), dtype=bool)
    frame = last_beat(cumscore)
    while frame >= 0:  # __dp_backtrack
        beats[frame] = True
        frame = backlink[frame]
    return trim_beats(localscore, beats, trim)


def normalize_onsets(onsets: np.ndarray) -> np.ndarray:
    """The envelope over its standard deviation (``__normalize_onsets``), in its own dtype."""
    norm = onsets.std(ddof=1, axis=-1, keepdims=True)
    return onsets / (norm + np.finfo(onsets.dtype).tiny)


def gaussian_window(frames_per_beat: float) -> np.ndarray:
    """``exp(-0.5 (32 k / fpb)^2)`` for k in [-fpb, fpb], each term by libm's exp as numba's is."""
    scaled = np.arange(-frames_per_beat, frames_per_beat + 1) * 32.0 / frames_per_beat
    return np.array([math.exp(value) for value in (-0.5 * scaled**2).tolist()])


def local_score(onsets: np.ndarray, frames_per_beat: float) -> np.ndarray:
    """``__beat_local_score`` (static tempo): the envelope smoothed by the beat-wide Gaussian.

    A same-mode convolution summed in librosa's order (k ascending, one rounding per term)
    whose sum never reaches ``onsets[0]`` (its loop stops one tap short): x[0] reads as 0.
    """
    window = gaussian_window(frames_per_beat)
    size, half = len(window), len(window) // 2
    count = len(onsets)
    padded = np.zeros(count + size, dtype=onsets.dtype)  # padded[half + j] = onsets[j]
    padded[half + 1 : half + count] = onsets[1:]
    score = np.zeros(count, dtype=onsets.dtype)
    for k in range(size):  # term k of output i reads onsets[i + half - k] = padded[i + 2 half - k]
        score += window[k] * padded[2 * half - k : 2 * half - k + count]
    return score


def beat_track_dp(localscore: np.ndarray, frames_per_beat: float, tightness: float) -> tuple[np.ndarray, np.ndarray]:
    """``__beat_track_dp``: (backlink, cumscore), a block of half a beat of frames at a time.

    Frame i's predecessor is the loc in [i - 2 fpb, i - round(fpb / 2)] with the best
    ``cumscore[loc] - tightness (log(i - loc) - log(fpb))^2``, the nearest on ties (numba's
    loop visits loc downwards and keeps the first maximum).
    """
    count = len(localscore)
    fpb = int(frames_per_beat)
    nearest = int(np.round(frames_per_beat / 2))  # round half to even, as numba's np.round
    if nearest < 1:
        raise ValueError(f"{frames_per_beat:g} frames per beat is too few to track beats")
    distances = np.arange(2 * fpb, nearest - 1, -1)  # candidate columns: loc = i - 2 fpb ... i - nearest
    weight = float(np.float32(tightness))  # the kernel's tightness argument is float32
    log_fpb = math.log(frames_per_beat)
    penalty = np.array([weight * (math.log(d) - log_fpb) ** 2 for d in distances.tolist()])
    # cumscore lives behind 2 fpb slots of -inf: the rows of a sliding window are frame i's candidates
    padded = np.full(2 * fpb + count, -np.inf, dtype=localscore.dtype)
    cumscore = padded[2 * fpb :]
    candidates = np.lib.stride_tricks.sliding_window_view(padded, len(distances))
    best_location = np.full(count, -1, dtype=np.int64)
    for start in range(0, count, nearest):
        stop = min(start + nearest, count)
        scores = candidates[start:stop] - penalty  # float64, as numba's score
        reversed_first = np.argmax(scores[:, ::-1], axis=1)  # nearest candidate first
        column = len(distances) - 1 - reversed_first
        best = scores[np.arange(stop - start), column]
        frames = np.arange(start, stop)
        found = frames >= nearest  # some loc >= 0 exists
        cumscore[start:stop] = localscore[start:stop] + np.where(found, best, 0.0)  # no predecessor: its own score
        best_location[start:stop] = np.where(found, frames - distances[column], -1)
    backlink = best_location.astype(np.int32)
    threshold = 0.01 * float(localscore.max())  # float64 in numba, whatever the score's dtype
    started = np.flatnonzero(~(localscore < threshold))
    backlink[: started[0] if len(started) else count] = -1  # no beat before the first strong onset
    return backlink, cumscore.copy()


def local_maxima(values: np.ndarray) -> np.ndarray:
    """``librosa.util.localmax``: x[i] > x[i-1] and x[i] >= x[i+1]; never x[0]; x[-1] if > x[-2]."""
    peaks = np.zeros(len(values), dtype=bool)
    peaks[1:-1] = (values[1:-1] > values[:-2]) & (values[1:-1] >= values[2:])
    if len(values) > 1:
        peaks[-1] = values[-1] > values[-2]
    return peaks


def last_beat(cumscore: np.ndarray) -> int:
    """``__last_beat``: the last local maximum scoring at least half the median local maximum."""
    peaks = local_maxima(cumscore)
    median = np.ma.median(np.ma.masked_array(data=cumscore, mask=~peaks), axis=-1)
    threshold = 0.5 * np.ma.getdata(median)
    chosen = np.flatnonzero(peaks & (cumscore >= threshold))
    return int(chosen[-1]) if len(chosen) else len(cumscore) - 1


def trim_beats(localscore: np.ndarray, beats: np.ndarray, trim: bool) -> np.ndarray:
    """``__trim_beats``: drop the beats of leading and trailing frames weaker than a threshold.

    As librosa computes it: the threshold is half the RMS of ``localscore[beats]`` convolved
    with hanning(5), sliced ``[2 : len(localscore) + 2]``; frames are cleared from each end
    while their local score is at or below it.
    """
    trimmed = beats.copy()
    window = np.hanning(5)
    smooth = np.convolve(localscore[beats], window)[len(window) // 2 : len(localscore) + len(window) // 2]
    if trim:
        mean = np.cumsum(smooth**2)[-1] / smooth.size  # numba's mean: a running sum
        threshold = 0.5 * float(mean) ** 0.5
    else:
        threshold = 0.0
    weak = localscore <= threshold
    lead = int(np.argmin(weak)) if not weak.all() else len(weak)
    trimmed[:lead] = False
    tail = int(np.argmin(weak[::-1])) if not weak.all() else len(weak)
    trimmed[len(weak) - tail :] = False
    return trimmed
