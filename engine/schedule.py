"""The schedule language: ``0:(expr), 30:(expr), ...`` compiled once into per-frame arrays.

Grammar (docs/language.md, "Schedules"): comma-separated keyframes ``position:(expression)``;
commas inside parentheses, newlines and a trailing comma are fine; a bare number or
expression is one keyframe at 0. Positions are frames (``30``), seconds (``2.5s``), beats
(``8b``) or a constant expression (``"max_f-1"``).

Two blends:

* ``tween`` (default): between keyframes k and k+1 the value is
  ``(1-w)·E_k(t) + w·E_k+1(t)``; before the first keyframe and after the last, that
  keyframe's expression alone. Keyframes past the last frame still shape the curve.
* ``hold`` (Deforum compatibility): each expression alone until the next keyframe, numbers
  interpolated linearly, the first keyframe's value held backwards, keyframes at or past
  the last frame ignored, the last of duplicate keyframes wins.

Non-finite values keep the last finite value, with one notice per schedule.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from engine.errors import ScheduleError, notify
from engine.expression import Expression, compile_expression
from engine.number_keyframes import read_number_keyframes

Blend = Literal["tween", "hold"]
BLENDS: tuple[Blend, ...] = ("tween", "hold")
FRAME_VARIABLES = ("t", "s")  # change every frame
TIMELINE_VARIABLES = ("max_f", "fps", "seed")  # constant over a run; usable in keyframe positions

_UNIT_POSITION = re.compile(r"^([0-9]*\.?[0-9]+)\s*([sb])$")
_DEFORUM_NUMBER = re.compile(r"^(?=.)([+-]?([0-9]*)(\.([0-9]+))?)$")  # Deforum's check_is_number
_PLAIN_POSITION = re.compile(r"[0-9]+(?:\.[0-9]+)?")


@dataclass(frozen=True)
class Timeline:
    """What positions and built-in variables are measured against."""

    frames: int
    fps: float = 15.0
    bpm: float | None = None
    seed: int = -1

    def constants(self, blend: Blend = "tween") -> dict[str, float]:
        """``max_f`` is the frame count; in hold mode, as in Deforum, the last frame's index."""
        max_f = self.frames - 1 if blend == "hold" else self.frames
        return {"max_f": float(max_f), "fps": float(self.fps), "seed": float(self.seed)}

    def frame_variables(self, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        t = np.arange(start, self.frames if stop is None else stop, dtype=np.float64)
        return {"t": t, "s": t / self.fps}


@dataclass(frozen=True)
class Piece:
    """One top-level comma-separated part of a schedule, with where it starts."""

    text: str
    offset: int


@dataclass(frozen=True)
class RawKeyframe:
    """A keyframe as written: position and value text, each with its offset."""

    position: Piece | None  # None: a bare expression, one keyframe at 0
    value: Piece


@dataclass(frozen=True)
class Keyframe:
    label: str  # the position as written, for messages
    position: float
    expression: Expression
    offset: int  # where the keyframe starts in the source
    literal: bool  # a plain number as Deforum reads one: hold mode tweens from it

    def as_frame(self, frame: int) -> Keyframe:
        return Keyframe(self.label, float(frame), self.expression, self.offset, self.literal)


def split_top_level(text: str, separator: str, *, field: str | None = None, quotes: str = "\"'`") -> Iterator[Piece]:
    """Split at ``separator`` outside brackets and ``quotes``; a backslash escapes one character.

    ``separator`` may be several characters (``||``). Unbalanced brackets are errors.
    """
    closers = {"(": ")", "[": "]", "{": "}"}
    stack: list[tuple[str, int]] = []
    quote: tuple[str, int] | None = None
    start = index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if quote:
            if char == quote[0]:
                quote = None
        elif char in quotes:
            quote = (char, index)
        elif char in closers:
            stack.append((closers[char], index))
        elif char in closers.values():
            if not stack or stack[-1][0] != char:
                raise ScheduleError(
                    f"unmatched {char!r}",
                    field=field,
                    source=text,
                    offset=index,
                    hint="remove it or add the opening bracket it closes",
                )
            stack.pop()
        elif not stack and text.startswith(separator, index):
            yield Piece(text[start:index], start)
            start = index = index + len(separator)
            continue
        index += 1
    if quote:
        raise ScheduleError(
            f"unclosed quote {quote[0]}",
            field=field,
            source=text,
            offset=quote[1],
            hint=f"add the closing {quote[0]}",
        )
    if stack:
        closer, index = stack[-1]
        raise ScheduleError(
            f"unclosed {text[index]!r}",
            field=field,
            source=text,
            offset=index,
            hint=f"add the closing {closer!r}",
        )
    yield Piece(text[start:], start)


def strip_piece(piece: Piece) -> Piece:
    stripped = piece.text.strip()
    return Piece(stripped, piece.offset + (len(piece.text) - len(piece.text.lstrip())) if stripped else piece.offset)


def unwrap(piece: Piece, *, quotes: bool = True) -> Piece:
    """Remove one pair of enclosing parentheses (and quotes): ``(0.5)`` -> ``0.5``."""
    piece = strip_piece(piece)
    text = piece.text
    if text.startswith("(") and text.endswith(")") and _matching_close(text) == len(text) - 1:
        return unwrap(Piece(text[1:-1], piece.offset + 1), quotes=quotes)
    if quotes and len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return strip_piece(Piece(text[1:-1], piece.offset + 1))
    return piece


def _matching_close(text: str) -> int:
    depth = 0
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return index
    return -1


def read_keyframes(text: str, *, field: str | None = None) -> list[RawKeyframe]:
    """Split a schedule into keyframes without interpreting positions or values."""
    pieces = [strip_piece(p) for p in split_top_level(text, ",", field=field)]
    pieces = [p for p in pieces if p.text]
    if not pieces:
        raise ScheduleError(
            "the schedule is empty",
            field=field,
            source=text,
            offset=0,
            hint="write a number, an expression, or keyframes like 0:(1.0), 30:(1.05)",
        )
    keyframes = []
    for piece in pieces:
        parts = list(split_top_level(piece.text, ":", field=field))
        if len(parts) == 1:
            if len(pieces) > 1:
                raise ScheduleError(
                    "this keyframe has no position",
                    field=field,
                    source=text,
                    offset=piece.offset,
                    hint="write it as frame:(value), e.g. 30:(1.05)",
                )
            keyframes.append(RawKeyframe(None, piece))
            continue
        if len(parts) > 2:
            second = piece.offset + parts[2].offset - 1
            raise ScheduleError(
                "a keyframe has one ':'",
                field=field,
                source=text,
                offset=second,
                hint="separate keyframes with commas: 0:(1), 30:(2)",
            )
        position, value = parts
        keyframes.append(
            RawKeyframe(
                strip_piece(Piece(position.text, piece.offset + position.offset)),
                Piece(value.text, piece.offset + value.offset),
            )
        )
    return keyframes


def resolve_position(
    piece: Piece, timeline: Timeline, *, source: str, field: str | None, blend: Blend = "tween"
) -> float:
    """Frame number of a keyframe position: ``30``, ``2.5s``, ``8b`` or ``"max_f-1"``."""
    inner = unwrap(piece)
    if not inner.text:
        raise ScheduleError(
            "a keyframe needs a position before ':'",
            field=field,
            source=source,
            offset=piece.offset,
            hint="write the frame number, e.g. 0:(1)",
        )
    if _PLAIN_POSITION.fullmatch(inner.text):
        return float(inner.text)
    unit = _UNIT_POSITION.match(inner.text)
    if unit:
        amount, kind = float(unit.group(1)), unit.group(2)
        if kind == "s":
            return amount * timeline.fps
        if not timeline.bpm:
            raise ScheduleError(
                "beat positions need a tempo",
                field=field,
                source=source,
                offset=inner.offset,
                keyframe=inner.text,
                hint="give the preset an audio file (its tempo is detected) or set audio.bpm",
            )
        return amount * 60.0 / timeline.bpm * timeline.fps
    try:
        expression = compile_expression(inner.text, set(TIMELINE_VARIABLES), offset=inner.offset, whole=source)
    except ScheduleError as error:
        error.keyframe = inner.text
        error.hint = "a position is a frame number (30), seconds (2.5s), beats (8b) or an expression of max_f and fps"
        raise error.located(field=field) from None
    position = expression.at(timeline.constants(blend))
    if not np.isfinite(position) or position < 0:
        raise ScheduleError(
            f"position {inner.text} is {position:g}, before frame 0",
            field=field,
            source=source,
            offset=inner.offset,
            keyframe=inner.text,
            hint="positions are frames from 0 up",
        )
    return position


class Schedule:
    """A compiled schedule: evaluate all frames at once, or one frame at a time (live)."""

    def __init__(
        self, source: str, keyframes: list[Keyframe], timeline: Timeline, blend: Blend, field: str | None
    ) -> None:
        self.source = source
        self.keyframes = keyframes
        self.timeline = timeline
        self.blend = blend
        self.field = field
        self.positions = [k.position for k in keyframes]
        self.names = frozenset().union(*(k.expression.names for k in keyframes))
        self._last_finite: float | None = None
        self._warned = False

    def evaluate(self, variables: Mapping[str, np.ndarray | float] | None = None) -> np.ndarray:
        """Values for every frame of the timeline. ``variables``: extra named arrays/scalars."""
        frames = self.timeline.frames
        values = (self._tween if self.blend == "tween" else self._hold)(dict(variables or {}), frames)
        return self._hold_non_finite(values)

    def at(self, frame: int, variables: Mapping[str, float] | None = None, *, seconds: float | None = None) -> float:
        """Value at one frame from scalar variables: the live-mode path (``seconds``: the wall
        clock for ``s``, which is otherwise frame / fps)."""
        scope = {
            **self.timeline.constants(self.blend),
            **(variables or {}),
            "t": float(frame),
            "s": frame / self.timeline.fps if seconds is None else seconds,
        }
        index = bisect.bisect_right(self.positions, frame) - 1
        keys = self.keyframes
        if self.blend == "tween":
            if index < 0 or index == len(keys) - 1:
                value = keys[max(index, 0)].expression.at(scope)
            else:
                left, right = keys[index], keys[index + 1]
                w = (frame - left.position) / (right.position - left.position)
                value = (1 - w) * left.expression.at(scope) + w * right.expression.at(scope)
        else:
            value = self._hold_at(index, frame, scope)
        if np.isfinite(value):
            self._last_finite = value
            return value
        self._notice_once()
        return self._last_finite if self._last_finite is not None else 0.0

    # -- tween ---------------------------------------------------------------------------

    def _tween(self, variables: dict, frames: int) -> np.ndarray:
        keys = self.keyframes
        bounds = [0] + [int(np.clip(np.ceil(k.position), 0, frames)) for k in keys] + [frames]
        # segment j (j = -1 .. n-1) covers frames bounds[j+1]:bounds[j+2]
        out = np.empty(frames)
        cache: dict[int, tuple[int, np.ndarray]] = {}

        def values_of(k: int, start: int, stop: int) -> np.ndarray:
            if k not in cache:  # E_k is needed on segments k-1 and k only: evaluate that once
                lo, hi = bounds[k], bounds[k + 2]
                cache[k] = (lo, self._evaluate(keys[k].expression, variables, lo, hi))
            lo, array = cache[k]
            return array[start - lo : stop - lo]

        last = len(keys) - 1
        for j in range(-1, len(keys)):
            start, stop = bounds[j + 1], bounds[j + 2]
            if start >= stop:
                continue
            if j == -1 or j == last:
                out[start:stop] = values_of(max(j, 0), start, stop)
                continue
            left, right = keys[j], keys[j + 1]
            w = (np.arange(start, stop) - left.position) / (right.position - left.position)
            out[start:stop] = (1 - w) * values_of(j, start, stop) + w * values_of(j + 1, start, stop)
        return out

    def _evaluate(self, expression: Expression, variables: dict, start: int, stop: int) -> np.ndarray:
        if expression.constant is not None:
            return np.full(stop - start, expression.constant)
        scope = {**self.timeline.constants(self.blend), **self.timeline.frame_variables(start, stop)}
        for name in expression.names - scope.keys():
            if name not in variables:
                raise ScheduleError(f"no values were given for {name!r}", field=self.field, source=self.source)
            value = variables[name]
            scope[name] = value[start:stop] if np.ndim(value) else value
        return expression.evaluate(scope, stop - start)

    # -- hold (Deforum) ------------------------------------------------------------------

    def _hold(self, variables: dict, frames: int) -> np.ndarray:
        series = np.full(frames, np.nan)
        written = np.zeros(frames, dtype=bool)
        keys = self.keyframes
        starts = [int(k.position) for k in keys] + [frames]
        for k, key in enumerate(keys):
            start, stop = starts[k], (starts[k] + 1 if key.literal else starts[k + 1])
            series[start:stop] = self._evaluate(key.expression, variables, start, stop)
            written[start:stop] = True
        series[0] = series[starts[0]]  # the first keyframe holds backwards
        series[frames - 1] = series[np.flatnonzero(written)[-1]]
        written[[0, frames - 1]] = True
        if not written.all():  # after a number, tween linearly to the next keyframe's value
            anchors = np.flatnonzero(written)
            gaps = np.flatnonzero(~written)
            series[gaps] = np.interp(gaps, anchors, series[anchors])
        return series

    def _hold_at(self, index: int, frame: int, scope: dict) -> float:
        keys = self.keyframes

        def value_at_key(k: int) -> float:
            position = keys[k].position
            return keys[k].expression.at({**scope, "t": position, "s": position / self.timeline.fps})

        if index < 0:
            return value_at_key(0)
        key = keys[index]
        if not key.literal:
            return key.expression.at(scope)
        if index == len(keys) - 1 or frame == key.position:
            return key.expression.constant
        right = keys[index + 1]
        slope = (value_at_key(index + 1) - key.expression.constant) / (right.position - key.position)
        return slope * (frame - key.position) + key.expression.constant  # np.interp's formula

    # -- non-finite ----------------------------------------------------------------------

    def _hold_non_finite(self, values: np.ndarray) -> np.ndarray:
        bad = ~np.isfinite(values)
        if not bad.any():
            return values
        if bad.all():
            raise ScheduleError(
                "this schedule has no finite value on any frame",
                field=self.field,
                source=self.source,
                offset=0,
                hint="check for division by zero or log of zero/negative numbers",
            )
        self._notice_once()
        index = np.where(bad, 0, np.arange(len(values)))
        np.maximum.accumulate(index, out=index)
        first = int(np.argmax(~bad))
        index[:first] = first  # nothing finite before: take the first finite value
        return values[index]

    def _notice_once(self) -> None:
        if not self._warned:
            self._warned = True
            notify(f"{self.field or 'schedule'}: some frames are not finite (inf/nan); the last finite value is kept")


def compile_schedule(
    text: str | float,
    timeline: Timeline,
    *,
    names: set[str] | frozenset[str] | tuple[str, ...] = (),
    blend: Blend = "tween",
    field: str | None = None,
) -> Schedule:
    """Compile ``text`` for ``timeline``. ``names``: extra variables (audio envelopes...)."""
    source = _as_text(text)
    if blend not in BLENDS:
        raise ScheduleError(f"unknown blend {blend!r}", field=field, hint="use 'tween' or 'hold'")
    numeric = NumericSchedule.read(source, timeline, blend, field)
    if numeric is not None:
        return numeric
    return compile_keyframes(source, timeline, names=names, blend=blend, field=field)


def compile_keyframes(
    source: str,
    timeline: Timeline,
    *,
    names: set[str] | frozenset[str] | tuple[str, ...] = (),
    blend: Blend = "tween",
    field: str | None = None,
) -> Schedule:
    """Every keyframe read and compiled: what :func:`compile_schedule` does unless the text
    is numbers only."""
    allowed = set(FRAME_VARIABLES) | set(TIMELINE_VARIABLES) | set(names)
    compiled: list[Keyframe] = []
    for raw in read_keyframes(source, field=field):
        label = raw.position.text if raw.position else "0"
        position = (
            0.0
            if raw.position is None
            else resolve_position(raw.position, timeline, source=source, field=field, blend=blend)
        )
        if blend == "hold" and round(position, 9) >= timeline.frames:
            continue  # Deforum never reads these (and _order drops them)
        value = unwrap(raw.value)
        literal = bool(_DEFORUM_NUMBER.match(re.sub(r"[\"'()]", "", raw.value.text.strip())))
        try:
            expression = compile_expression(value.text, allowed, offset=value.offset, whole=source)
        except ScheduleError as error:
            error.keyframe = label
            raise error.located(field=field) from None
        where = raw.position.offset if raw.position else raw.value.offset
        compiled.append(Keyframe(label, position, expression, where, literal))
    keyframes = _order(compiled, timeline, blend, source, field)
    return Schedule(source, keyframes, timeline, blend, field)


class NumericSchedule:
    """A schedule of numbers at whole frames (a per-frame export, Parseq's output): read in one
    pass and interpolated with ``np.interp``, the values of :class:`Schedule` for the same text."""

    names = frozenset()

    def __init__(
        self, source: str, positions: np.ndarray, values: np.ndarray, timeline: Timeline, blend: Blend, field
    ) -> None:
        self.source = source
        self.timeline = timeline
        self.blend = blend
        self.field = field
        self._anchors, self._values = positions, values  # np.interp holds the first and the last

    @property
    def positions(self) -> list[float]:
        return self._anchors.tolist()

    @classmethod
    def read(cls, source: str, timeline: Timeline, blend: Blend, field: str | None) -> NumericSchedule | None:
        """The schedule when ``source`` is numbers only; None where it needs the full reading
        (expressions, positions in seconds or beats, repeated frames, nothing before the end)."""
        read = read_number_keyframes(source, before=timeline.frames if blend == "hold" else None)
        if read is None:
            return None
        positions, values = read
        if len(positions) == 0:
            return None
        if not (positions[1:] > positions[:-1]).all():  # as exports write them: in order
            order = np.argsort(positions, kind="stable")
            positions, values = positions[order], values[order]
            if (positions[1:] == positions[:-1]).any():
                return None
        return cls(source, positions, values, timeline, blend, field)

    def evaluate(self, variables: Mapping[str, np.ndarray | float] | None = None) -> np.ndarray:
        return np.interp(np.arange(self.timeline.frames, dtype=np.float64), self._anchors, self._values)

    def at(self, frame: int, variables: Mapping[str, float] | None = None, *, seconds: float | None = None) -> float:
        return float(np.interp(frame, self._anchors, self._values))


def _order(keys: list[Keyframe], timeline: Timeline, blend: Blend, source: str, field: str | None) -> list[Keyframe]:
    if blend == "hold":
        by_frame: dict[int, Keyframe] = {}
        for key in keys:
            frame = int(round(key.position, 9))  # Deforum keys are whole frames
            if frame in by_frame:
                notify(f"{field or 'schedule'}: keyframe {frame} is written twice; the last one wins")
            by_frame[frame] = key.as_frame(frame)
        kept = [by_frame[f] for f in sorted(by_frame) if 0 <= f < timeline.frames]
        if not kept:
            raise ScheduleError(
                f"every keyframe is at or past the last frame ({timeline.frames - 1})",
                field=field,
                source=source,
                offset=0,
                hint="in hold mode such keyframes are ignored: add one at frame 0",
            )
        return kept
    ordered = sorted(keys, key=lambda k: k.position)
    for before, after in itertools.pairwise(ordered):
        if after.position == before.position:
            raise ScheduleError(
                f"frame {after.position:g} has two keyframes",
                field=field,
                source=source,
                offset=after.offset,
                keyframe=after.label,
                hint="remove one of them",
            )
    return ordered


def _as_text(value: str | float) -> str:
    if isinstance(value, bool):
        raise ScheduleError(f"{value!r} is not a schedule", hint="write a number or keyframes like 0:(1)")
    return repr(value) if isinstance(value, int | float) else str(value)


class TextSchedule:
    """Names by frame (``0:("euler_a"), 30:("ddim")``), each held until the next keyframe."""

    def __init__(self, source: str, keys: list[tuple[float, str]], frames: int, field: str | None) -> None:
        self.source = source
        self.keys = keys
        self.frames = frames
        self.field = field

    def at(self, frame: int) -> str:
        index = max(bisect.bisect_right([p for p, _ in self.keys], frame) - 1, 0)
        return self.keys[index][1]

    def values(self) -> list[str]:
        return [self.at(frame) for frame in range(self.frames)]


def compile_text_schedule(
    text: str, timeline: Timeline, *, blend: Blend = "tween", field: str | None = None
) -> TextSchedule:
    """Compile a schedule whose values are names; quotes around them are optional."""
    source = _as_text(text)
    keys: dict[float, str] = {}
    for raw in read_keyframes(source, field=field):
        position = (
            0.0
            if raw.position is None
            else resolve_position(raw.position, timeline, source=source, field=field, blend=blend)
        )
        if blend == "hold":
            position = float(int(position))
        value = unwrap(raw.value).text
        if not value:
            raise ScheduleError(
                "this keyframe has no name",
                field=field,
                source=source,
                offset=raw.value.offset,
                hint='write names in quotes, e.g. 0:("euler_a"), 30:("ddim")',
            )
        if position in keys and blend == "tween":
            raise ScheduleError(
                f"frame {position:g} has two keyframes",
                field=field,
                source=source,
                offset=raw.value.offset,
                hint="remove one of them",
            )
        keys[position] = value
    kept = sorted((p, v) for p, v in keys.items() if blend == "tween" or p < timeline.frames)
    if not kept:
        raise ScheduleError(
            f"every keyframe is at or past the last frame ({timeline.frames - 1})",
            field=field,
            source=source,
            offset=0,
            hint="add a keyframe at frame 0",
        )
    return TextSchedule(source, kept, timeline.frames, field)
