"""Numbers-only keyframe strings as exports write them (``0: (1.0), 1: (1.02), ...``) read at once.

A per-frame export or a Parseq render holds thousands of keyframes, each a whole frame and a
number. A short text's form is checked by one regular expression and its pieces split apart; in
a long one the marks are checked by counting bytes, their places found and checked as arrays and
the positions parsed in whole-array numpy steps. In hold mode only the values before the end are
converted. Anything else (expressions, seconds, other spacing, leading zeros) is left to the
full reading: the caller gets None.
"""

from __future__ import annotations

import re

import numpy as np

_MARKS = bytes(int(chr(byte) in ":(),") for byte in range(256))  # a translation: 1 at each mark
_NUMBER = r"[+-]?+(?:[0-9]++(?:\.[0-9]++)?+|\.[0-9]++)"  # a number as Deforum's check_is_number takes one
_NUMBERS = re.compile(rf"{_NUMBER}(?: {_NUMBER})*+")  # joined by spaces
_OTHERS = bytes(byte for byte in range(32, 127) if chr(byte) not in ":(),")  # printable
_VALUE = r"[!-'*+\--9;-~]++"  # printable, no mark nor space: a number only where it is read
_KEYFRAME = rf"(?:0|[1-9][0-9]{{0,14}}+): ?+\({_VALUE}\)"  # fifteen digits at most, as _MAX_DIGITS
_KEYFRAMES = re.compile(rf"{_KEYFRAME}(?:, ?+{_KEYFRAME})*+")
_TO_SPACES = str.maketrans(":(),", "    ")
ARRAYS_FROM = 8192  # bytes: below, one match and a split are faster than numpy's calls
_MAX_DIGITS = 15  # whole numbers below 2**53: exact as floats
_POWERS = 10.0 ** np.arange(_MAX_DIGITS)
_COLUMNS = np.arange(-_MAX_DIGITS, 0)  # places before a colon


def read_number_keyframes(source: str, before: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Positions and values of ``source`` when it is ``P: (V), P: (V), ...`` — one optional space
    after each colon and comma, whole-frame positions without leading zeros, values in Deforum's
    number form (``[+-]digits[.digits]``, ``[+-].digits``); None otherwise. ``before``: only the
    keyframes before that frame (all hold mode reads)."""
    read = read_by_matching if len(source) < ARRAYS_FROM else read_by_arrays
    return read(source, before)


def read_by_matching(source: str, before: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`read_number_keyframes` for a short text: its form checked by one match, its pieces
    split apart."""
    source = source.strip()
    if not _KEYFRAMES.fullmatch(source):
        return None
    tokens = source.translate(_TO_SPACES).split()  # position, value, position, ...
    positions, values = tokens[0::2], tokens[1::2]
    if before is not None:
        kept = _before(positions, before)
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
    source, data = "," + source, b"," + data  # a comma before the first position, as before every other
    text = np.frombuffer(data, np.uint8)
    marks = np.flatnonzero(np.frombuffer(data.translate(_MARKS), bool))  # , : ( ) , : ( ) ...
    commas, colons, opens, closes = marks[0::4], marks[1::4], marks[2::4], marks[3::4]
    spaced_commas, spaced_colons = text[commas + 1] == ord(" "), text[colons + 1] == ord(" ")
    starts = commas + 1 + spaced_commas
    lengths = colons - starts
    if not (
        (opens - colons - 1 == spaced_colons).all()
        and (commas[1:] - closes[:-1] == 1).all()
        and data.count(b" ") == np.count_nonzero(spaced_colons) + np.count_nonzero(spaced_commas)
        and lengths.min() >= 1
        and lengths.max() <= _MAX_DIGITS
        and not ((text[starts] == ord("0")) & (lengths > 1)).any()
    ):
        return None
    if before is not None:  # without leading zeros, longer than the last frame's digits is past it
        shorter = np.flatnonzero(lengths <= len(str(before - 1)))
        colons, lengths, opens, closes = colons[shorter], lengths[shorter], opens[shorter], closes[shorter]
    positions = _whole_numbers(text, colons, lengths)
    if before is not None:
        kept = positions < before
        positions, opens, closes = positions[kept], opens[kept], closes[kept]
    values = [source[open + 1 : close] for open, close in zip(opens.tolist(), closes.tolist(), strict=True)]
    numbers = _decimal_numbers(values)
    return None if numbers is None else (positions, numbers)


def _marks_in_order(source: str) -> tuple[str, bytes] | None:
    """``source`` stripped, and as bytes, when its colons, parentheses and commas are ``n``
    keyframes ``:(...)`` joined by ``,``, digits before each colon; None otherwise. Its marks
    alone (every other printable character taken out) read ``:(),`` ``n - 1`` times, then
    ``:()``; with digits and spaces taken out, the ``n - 1`` joins ``),:(`` and a ``:(`` first
    leave any other character nowhere but inside the parentheses."""
    source = source.strip()
    if not (source[:1].isdigit() and source.endswith(")") and source.isascii()):
        return None
    data = source.encode("ascii")
    count = data.count(b":")
    if data.translate(None, _OTHERS) != b":()," * (count - 1) + b":()":  # (nothing unprintable either)
        return None
    joined = data.translate(None, b"0123456789 ")
    return (source, data) if joined.startswith(b":(") and joined.count(b"),:(") == count - 1 else None


def _before(positions: list[str], before: int) -> list[int]:
    """Where whole numbers written without leading zeros are below ``before``: shorter than the
    last frame's, or as long and not past it."""
    if before <= 0:
        return []
    last = str(before - 1)
    digits = len(last)
    return [k for k, p in enumerate(positions) if len(p) <= digits and (len(p) < digits or p <= last)]


def _whole_numbers(text: np.ndarray, ends: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The runs of digits of ``lengths`` ending before ``ends`` as floats: each number's digits a
    row, right-aligned, times the powers of ten (the columns left of a number read as nothing)."""
    columns = _COLUMNS[-int(lengths.max(initial=1)) :]
    chars = text[ends[:, None] + columns]
    return np.where(columns >= -lengths[:, None], chars - 48.0, 0.0) @ _POWERS[len(columns) - 1 :: -1]


def _decimal_numbers(texts: list[str]) -> np.ndarray | None:
    """``texts`` as floats when each is a number as Deforum's ``check_is_number`` takes one;
    None otherwise."""
    if texts and not _NUMBERS.fullmatch(" ".join(texts)):
        return None
    return np.fromiter(map(float, texts), dtype=np.float64, count=len(texts))
