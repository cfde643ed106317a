"""Onset strength: ``librosa.onset.onset_strength``'s spectral flux, in numpy and scipy.fft.

:func:`onset_strength` is ``librosa.onset.onset_strength(y=..., sr=..., hop_length=...)`` with
librosa 0.11's defaults for everything else: the power mel spectrogram (a centred, zero-padded
2048-point hann STFT, 128 Slaney-normalised bands from 0 Hz to sr/2), in dB (``power_to_db``:
ref 1, amin 1e-10, top_db 80), its positive rise over one frame (lag 1, max_size 1) averaged
over the bands, shifted by the STFT's centring. It runs librosa's steps in librosa's dtypes
(the windowed frames float64, as a float64 window times float32 samples makes them, the STFT
rounded to complex64, everything after it float32), its mel projection through BLAS as
librosa's einsum, and its summation orders, and gives librosa's envelope to the bit on every
track we compare (tests/test_beats.py, bench/audio.py). Why a port: importing
``librosa.onset`` costs a second in every process, and the first import after install
compiles numba code for tens of seconds, for kernels this computation never calls.

Frames go through the STFT and the mel projection a block at a time (librosa holds the whole
complex spectrogram); only the mel spectrogram, 128 values a frame, is kept for the dB step,
whose floor depends on the spectrogram's maximum.
"""

from __future__ import annotations

import os

import numpy as np

N_FFT = 2048
N_MELS = 128
AMIN, TOP_DB = 1e-10, 80.0
FFT_BLOCK = 1024  # frames a transform: 16 MB of float64 frames, 16 MB of complex128 spectrum
MEL_BLOCK = 8192  # frames a mel projection: few BLAS calls, as each leaves its threads spinning a while


def onset_strength(samples: np.ndarray, rate: float, hop_length: int) -> np.ndarray:
    """``librosa.onset.onset_strength(y=samples, sr=rate, hop_length=hop_length)``: float32, one value a frame."""
    decibels = power_to_db(mel_spectrogram(samples, rate, hop_length))
    rise = np.maximum(0.0, decibels[:, 1:] - decibels[:, :-1])  # the reference is the spectrum itself (max_size 1)
    envelope = np.mean(rise, axis=0)  # over the bands, row after row as librosa's C-ordered sum
    shift = 1 + N_FFT // (2 * hop_length)  # the lag, and the frames the centred STFT put ahead
    return np.pad(envelope, (shift, 0))[: decibels.shape[1]]


def mel_spectrogram(samples: np.ndarray, rate: float, hop_length: int) -> np.ndarray:
    """``librosa.feature.melspectrogram`` (power 2): float32, shape (128, frames), C-ordered as librosa's."""
    import scipy.fft

    padded = np.pad(np.asarray(samples, dtype=np.float32), N_FFT // 2)  # center=True, pad_mode="constant"
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::hop_length]
    window = hann(N_FFT)
    basis = mel_filters(rate, N_FFT)
    workers = min(os.cpu_count() or 1, 8)
    out = np.empty((N_MELS, len(frames)), dtype=np.float32)
    power = np.empty((min(MEL_BLOCK, len(frames)), 1 + N_FFT // 2), dtype=np.float32)
    for start in range(0, len(frames), MEL_BLOCK):
        chunk = frames[start : start + MEL_BLOCK]
        for first in range(0, len(chunk), FFT_BLOCK):
            windowed = window * chunk[first : first + FFT_BLOCK]  # float64, as the float64 window makes it
            spectrum = scipy.fft.rfft(windowed, axis=-1, workers=workers).astype(np.complex64)  # librosa's STFT dtype
            np.square(np.abs(spectrum), out=power[first : first + len(windowed)])
        # librosa's einsum("ft,mf->mt") of its F-ordered power spectrogram: this product, one sgemm
        out[:, start : start + len(chunk)] = basis @ power[: len(chunk)].T
    return out


def power_to_db(power: np.ndarray) -> np.ndarray:
    """``librosa.power_to_db(power)`` (ref 1.0, amin 1e-10, top_db 80), in power's dtype."""
    decibels = 10.0 * np.log10(np.maximum(AMIN, power))  # minus 10 log10(ref) = 0
    return np.maximum(decibels, decibels.max() - TOP_DB)


def hann(length: int) -> np.ndarray:
    """``scipy.signal.get_window("hann", length)`` (periodic), computed as scipy computes it."""
    if length == 1:
        return np.ones(1)
    return 0.5 + 0.5 * np.cos(np.linspace(-np.pi, np.pi, length + 1))[:-1]


def mel_filters(rate: float, n_fft: int) -> np.ndarray:
    """``librosa.filters.mel(sr=rate, n_fft=n_fft, fmax=rate / 2)``: 128 Slaney bands, float32."""
    weights = np.zeros((N_MELS, 1 + n_fft // 2), dtype=np.float32)
    bins = np.fft.rfftfreq(n=n_fft, d=1.0 / rate)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(0.5 * rate), N_MELS + 2))
    widths = np.diff(edges)
    ramps = np.subtract.outer(edges, bins)
    for band in range(N_MELS):
        lower = -ramps[band] / widths[band]
        upper = ramps[band + 2] / widths[band + 1]
        weights[band] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2 : N_MELS + 2] - edges[:N_MELS]))[:, np.newaxis]  # slaney: equal area
    return weights


# The Slaney mel scale: linear to 1 kHz (200/3 Hz a mel), logarithmic above (27 mels per factor 6.4)
MEL_STEP, LOG_MEL_HZ = 200.0 / 3, 1000.0
LOG_MEL = LOG_MEL_HZ / MEL_STEP
LOG_STEP = np.log(6.4) / 27.0


def hz_to_mel(hz: float) -> float:
    """``librosa.hz_to_mel(hz)`` (Slaney) of one frequency."""
    return float(LOG_MEL + np.log(hz / LOG_MEL_HZ) / LOG_STEP) if hz >= LOG_MEL_HZ else hz / MEL_STEP


def mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """``librosa.mel_to_hz(mels)`` (Slaney), element-wise."""
    hz = MEL_STEP * mels
    logarithmic = mels >= LOG_MEL
    hz[logarithmic] = LOG_MEL_HZ * np.exp(LOG_STEP * (mels[logarithmic] - LOG_MEL))
    return hz
