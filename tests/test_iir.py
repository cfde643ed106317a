"""audio.iir against scipy.signal: Butterworth designs as ``butter``'s, filtering as ``sosfilt``'s."""

import numpy as np
import pytest
from scipy import signal

from audio.iir import SosFilter, butter_sos

DESIGNS = [  # (order, edges in Hz, kind, rate): narrow and wide bands, low and near-Nyquist edges
    (5, (42.0, 78.0), "bandpass", 44100),
    (5, (20.0, 40.0), "bandpass", 48000),
    (4, (2000.0, 6000.0), "bandpass", 44100),
    (3, (10.0, 15000.0), "bandpass", 44100),  # wide: the odd order's pole pair is real
    (8, (100.0, 130.0), "bandpass", 96000),
    (1, (300.0, 3000.0), "bandpass", 8000),
    (2, (1000.0, 3990.0), "bandpass", 8000),
    (5, 300.0, "lowpass", 44100),
    (4, 300.0, "lowpass", 22050),
    (1, 100.0, "lowpass", 44100),
    (5, 8000.0, "highpass", 44100),
    (2, 60.0, "highpass", 48000),
    (7, 15000.0, "highpass", 44100),
]


def scipy_design(order, edges, kind, rate):
    return signal.butter(order, list(edges) if isinstance(edges, tuple) else edges, btype=kind, fs=rate, output="sos")


@pytest.mark.parametrize(("order", "edges", "kind", "rate"), DESIGNS)
def test_butter_sos_designs_scipys_filter(order, edges, kind, rate):
    ours, theirs = butter_sos(order, edges, kind, rate), scipy_design(order, edges, kind, rate)
    assert ours.shape == theirs.shape
    assert np.array_equal(ours[:, 3], np.ones(len(ours)))
    _, response = signal.sosfreqz(ours, 8192, fs=rate)
    _, expected = signal.sosfreqz(theirs, 8192, fs=rate)
    assert np.abs(response - expected).max() <= 1e-9
    np.testing.assert_allclose(poles(ours), poles(theirs), rtol=0, atol=1e-12)


def poles(sos: np.ndarray) -> np.ndarray:
    return np.sort_complex(np.concatenate([np.roots(section[3:]) for section in sos]))


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="bandstop"):
        butter_sos(4, (100.0, 200.0), "bandstop", 44100)


@pytest.mark.parametrize(("order", "edges", "kind", "rate"), DESIGNS[:3] + DESIGNS[7:9] + DESIGNS[10:11])
def test_sos_filter_gives_sosfilts_values_and_state(order, edges, kind, rate):
    sos = butter_sos(order, edges, kind, rate)
    run = SosFilter(sos)
    rng = np.random.default_rng(order)
    for length in (1, 5, 31, 32, 33, 1000, 40_000, 300_007):
        samples = (rng.standard_normal(length) * 0.3).astype(np.float32)
        warm_up = rng.standard_normal(2000) * 0.3
        start = signal.sosfilt(sos, warm_up, zi=np.zeros((len(sos), 2)))[1]  # a state the filter reaches
        expected, expected_state = signal.sosfilt(sos, samples.astype(np.float64), zi=start)
        filtered, state = run(samples, start)
        scale = max(np.abs(expected).max(), np.abs(start).max())
        assert filtered.dtype == np.float64 and filtered.shape == samples.shape
        assert np.abs(filtered - expected).max() <= 1e-8 * scale, length  # 6e-9 in the narrowest band
        assert state.shape == start.shape and np.abs(state - expected_state).max() <= 1e-8 * scale, length


def test_blocks_with_the_state_carried_give_the_whole_signals_output():
    sos = butter_sos(5, (42.0, 78.0), "bandpass", 44100)
    run = SosFilter(sos)
    rng = np.random.default_rng(1)
    samples = (rng.standard_normal(100_000) * 0.3).astype(np.float32)
    whole, whole_state = run(samples)
    pieces, state, position = [], None, 0
    while position < len(samples):
        size = int(rng.integers(1, 5000))
        piece, state = run(samples[position : position + size], state)
        pieces.append(piece)
        position += size
    scale = np.abs(whole).max()
    assert np.abs(np.concatenate(pieces) - whole).max() <= 1e-8 * scale
    assert np.abs(state - whole_state).max() <= 1e-8 * np.abs(whole_state).max()
    into = np.empty(len(samples), dtype=np.float32)
    assert run(samples, out=into)[0] is into and np.array_equal(into, whole.astype(np.float32))
    assert run(samples[:0])[0].shape == (0,)
