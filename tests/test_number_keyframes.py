"""The one-pass reading of numbers-only keyframe strings: both readers (by matching, for short
texts; by arrays, for long ones) give what ``float()`` gives for every piece, refuse the same
texts, and schedules read so equal the full reading's."""

import random

import numpy as np
import pytest

from engine.number_keyframes import ARRAYS_FROM, read_by_arrays, read_by_matching, read_number_keyframes
from engine.schedule import NumericSchedule, Timeline, compile_keyframes, compile_schedule

READERS = [read_by_matching, read_by_arrays]


def exported(rng: random.Random, count: int) -> str:
    """Keyframes as exports write them: random frames and numbers, spaced one way or another."""
    comma = rng.choice([", ", ","])
    keyframes = []
    for _ in range(count):
        position = rng.randint(0, 10 ** rng.randint(0, 6))
        value = f"{rng.choice(['', '-', '+'])}{rng.uniform(0, 10 ** rng.randint(0, 8)):.{rng.randint(0, 7)}f}"
        keyframes.append(f"{position}:{rng.choice([' ', ''])}({value})")
    return comma.join(keyframes)


def pieces(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Positions and values by ``float()`` on the text between the marks."""
    numbers = np.array([float(piece) for piece in text.translate(str.maketrans(":(),", "    ")).split()])
    return numbers[0::2], numbers[1::2]


@pytest.mark.parametrize("reader", READERS)
def test_each_reader_gives_what_float_gives_for_every_piece(reader):
    rng = random.Random(7)
    for _ in range(3000):
        text = exported(rng, rng.randint(1, 6))
        positions, values = pieces(text)
        got = reader(text)
        assert got is not None, text
        assert np.array_equal(got[0], positions) and np.array_equal(got[1], values), text
        before = rng.randint(1, 10**6)
        kept = positions < before
        held = reader(text, before)
        assert np.array_equal(held[0], positions[kept]) and np.array_equal(held[1], values[kept]), (text, before)


def test_both_readers_refuse_the_same_broken_texts():
    rng = random.Random(11)
    refused = 0
    for _ in range(3000):
        text = exported(rng, rng.randint(1, 4))
        at = rng.randrange(len(text))
        damage = rng.choice(["", " ", "  ", "x", "(", ")", ",", ":", ".", "-", "0", "e", "\t"])
        broken = text[:at] + damage + text[at + 1 :]
        by_counting, by_arrays = (reader(broken) for reader in READERS)
        assert (by_counting is None) == (by_arrays is None), broken
        if by_counting is None:
            refused += 1
            continue
        positions, values = pieces(broken)  # still keyframes as exports write them
        for got in (by_counting, by_arrays):
            assert np.array_equal(got[0], positions) and np.array_equal(got[1], values), broken
    assert refused > 1000


@pytest.mark.parametrize(
    "text",
    [
        "0:(1 2)",
        "0:(),1:(2)",
        "0:(1.2.3)",
        "0:(1-2)",
        "-1:(2)",
        "0:(1)1:(2)",
        "0:(.)",
        "0:(5.)",
        "0:(1), 1.5:(2)",
        "0:(1e5)",
        "0:(x)",
        "0:5(1)",
        "0:(1)5,1:(2)",
        "00:(1)",
        "0:(1),01:(2)",
        "0: 0.5, 7: 0.25",
        "0:(1),",
        "0:( 1)",
        "0 :(1)",
        "0:(1) ,1:(2)",
        "0:(1),  1:(2)",
        "0:  (1)",
        "0:(１)",
        "0:(1),:(2)",
        "0:((1))",
        "0:(1),1:(\t2)",
        "0:(1),\n1:(2)",
        "0:(+)",
        "0:(-.)",
        "0:(1+)",
        "0:(sin(t))",
        "2s:(1)",
    ],
)
def test_what_is_not_an_export_is_left_to_the_full_reading(text):
    for reader in READERS:
        assert reader(text) is None
    long = ", ".join([*(f"{i}: ({i % 7 / 8})" for i in range(1000)), text.replace("0:", "1000:", 1)])
    assert len(long) >= ARRAYS_FROM
    assert read_number_keyframes(long) is None


@pytest.mark.parametrize("count", [5, 300, 6001])
@pytest.mark.parametrize("blend", ["hold", "tween"])
def test_schedules_read_at_once_equal_the_full_reading(count, blend):
    rng = random.Random(count)
    frames = max(count // 3, 10)
    keyframes = sorted(rng.sample(range(count * 2), count))
    if blend == "hold":
        keyframes[0] = 0
    text = ", ".join(f"{k}: ({rng.uniform(-2, 2):.4f})" for k in keyframes)
    timeline = Timeline(frames, 24.0)
    fast = compile_schedule(text, timeline, blend=blend)
    assert isinstance(fast, NumericSchedule)
    full = compile_keyframes(text, timeline, blend=blend).evaluate()
    assert np.abs(fast.evaluate() - full).max() <= 1e-12
