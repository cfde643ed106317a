"""Numbers-only keyframe strings as exports write them (``0: (1.0), 1: (1.02), ...``) read at once.

A per-frame export or a Parseq render holds thousands of keyframes, each a whole frame and a
number. Its marks are checked by counting bytes; in a short text the spacing too, in a long one
the marks' places are found and checked as arrays and the positions parsed in whole-array numpy
steps. In hold mode only the values before the end are converted. Anything else (expressions,
seconds, other spacing, leading zeros) is left to the full reading: the caller gets None.
"""

from __future__ import annotations

import re

import numpy as np

_MARKS = bytes(int(chr(byte) in ":(),") for byte in range(256))  # a translation: 1 at each mark
_NUMBER = r"[+-]?+(?:[0-9]++(?:\.[0-9]++)?+|\.[0-9]++)"  # a number as Deforum's check_is_number takes one
_NUMBERS = re.compile(rf"{_NUMBER}(?: {_NUMBER})*+")  # joined by spaces
_TO_SPACES = str.maketrans(":(),", "    ")
ARRAYS_FROM = 3072  # bytes: below, counting is faster than numpy's calls; above, a count per check is slower
_MAX_DIGITS = 15  # whole numbers below 2**53: exact as floats
_POWERS = 10.0 ** np.arange(_MAX_DIGITS)


def read_number_keyframes(source: str, before: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Positions and values of ``source`` when it is ``P: (V), P: (V), ...`` — one optional space
    after each colon and comma, whole-frame positions without leading zeros, values in Deforum's
    number form (``[+-]digits[.digits]``, ``[+-].digits``); None otherwise. ``before``: only the
    keyframes before that frame (all hold mode reads)."""
    read = read_by_counting if len(source) < ARRAYS_FROM else read_by_arrays
    return read(source, before)


def read_by_counting(source: str, before: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`read_number_keyframes` for a short text: its spacing checked by counting bytes, its
    pieces split apart."""
    checked = _marks_in_order(source)
    if checked is None:
        return None
    source, data = checked
    count = data.count(b":")
    spaced_colons = data.count(b": (")
    if not (
        data.count(b":(") + spaced_colons == count  # "(" right after the colon or ": "
        and data.count(b"),") == count - 1
        and data.count(b" ") == spaced_colons + data.count(b", ")
        and data.count(b",:") + data.count(b", :") == 0  # no position empty
        and data.count(b",0") + data.count(b", 0") + data.startswith(b"0")
        == data.count(b",0:") + data.count(b", 0:") + data.startswith(b"0:")  # nor with a leading zero
    ):
        return None
    tokens = source.translate(_TO_SPACES).split()  # position, value, position, ...
    if len(tokens) != 2 * count:  # a value empty
        return None
    positions, values = tokens[0::2], tokens[1::2]
    if before is not None:  # without leading zeros, longer than the last frame's digits is past it
        digits = len(str(before - 1))
        kept = [k for k, position in enumerate(positions) if len(position) <= digits and int(position) < before]
        positions, values = [positions[k] for k in kept], [values[k] for k in kept]
    numbers = _decimal_numbers(values)
    return None if numbers is None else (np.array(list(map(int, positions)), dtype=np.float64), numbers)


def read_by_arrays(source: str, before: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`read_number_keyframes` for a long text: the places of its marks found and checked
    as arrays, without a pass over the text per check."""
    checked = _marks_in_order(source)
    if checked is None:
        return None
    source, data = checked
    text = np.frombuffer(data, np.uint8)
    marks = np.flatnonzero(np.frombuffer(data.translate(_MARKS), bool))  # : ( ) , : ( ) , ...
    colons, opens, closes, commas = marks[0::4], marks[1::4], marks[2::4], marks[3::4]
    starts = np.concatenate(([0], commas + 1))
    spaced_colons, spaced_commas = text[colons + 1] == ord(" "), text[starts[1:]] == ord(" ")
    starts[1:] += spaced_commas
    lengths = colons - starts
    if not (
        (opens - colons - 1 == spaced_colons).all()
        and (commas - closes[:-1] == 1).all()
        and data.count(b" ") == np.count_nonzero(spaced_colons) + np.count_nonzero(spaced_commas)
        and lengths.min() >= 1
        and lengths.max() <= _MAX_DIGITS
        and not ((text[starts] == ord("0")) & (lengths > 1)).any()
    ):
        return None
    if before is not None:
        shorter = np.flatnonzero(lengths <= len(str(before - 1)))
        starts, lengths, opens, closes = starts[shorter], lengths[shorter], opens[shorter], closes[shorter]
    positions = _whole_numbers(text, starts, lengths)
    if before is not None:
        kept = np.flatnonzero(positions < before)
        positions, opens, closes = positions[kept], opens[kept], closes[kept]
    values = [source[open + 1 : close] for open, close in zip(opens.tolist(), closes.tolist(), strict=True)]
    numbers = _decimal_numbers(values)
    return None if numbers is None else (positions, numbers)


def _marks_in_order(source: str) -> tuple[str, bytes] | None:
    """``source`` stripped, and as bytes, when its colons, parentheses and commas are ``n``
    keyframes ``:(...)`` joined by ``,``, digits before each colon; None otherwise. With digits
    and spaces taken out, a ``:(`` first, ``n - 1`` joins ``),:(``, and no more marks than they
    hold leave any other character nowhere but inside the parentheses."""
    source = source.strip()
    if not (source.isascii() and source.isprintable() and source[:1].isdigit() and source.endswith(")")):
        return None  # (no tab nor newline inside)
    data = source.encode("ascii")
    marks = data.translate(None, b"0123456789 ")
    count = marks.count(b":")
    in_order = (
        marks.startswith(b":(")
        and marks.count(b"),:(") == count - 1
        and marks.count(b"(") == count
        and marks.count(b")") == count
        and marks.count(b",") == count - 1
    )
    return (source, data) if in_order else None


def _whole_numbers(text: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Runs of digits as floats: each number's digits a row, times its powers of ten."""
    column = np.arange(max(int(lengths.max(initial=0)), 1))
    chars = text[np.minimum(starts[:, None] + column, len(text) - 1)]
    exponent = lengths[:, None] - 1 - column
    return np.einsum("ij,ij->i", np.where(exponent >= 0, chars - 48.0, 0.0), _POWERS[np.maximum(exponent, 0)])


def _decimal_numbers(texts: list[str]) -> np.ndarray | None:
    """``texts`` as floats when each is a number as Deforum's ``check_is_number`` takes one;
    None otherwise."""
    if texts and not _NUMBERS.fullmatch(" ".join(texts)):
        return None
    return np.fromiter(map(float, texts), dtype=np.float64, count=len(texts))
