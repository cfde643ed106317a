"""The prompt language: frame-keyed prompts, weighted sub-prompts, emphasis, negatives, scenes.

A prompt text is read in this order (docs/language.md, "Prompts"):

1. ``||`` splits it into scenes that share the time up to the next key;
   ``scene_prefix``/``scene_suffix`` wrap every scene (pytti).
2. ``--neg`` starts the negative part (Deforum); ``prompting.negative_prompt`` joins it.
3. ``|`` (or A1111's ``AND``) separates sub-prompts, each ``text:weight`` with a number,
   a backtick expression or a bare expression as weight (pytti, Deforum notebook).
   ``a:1 b:`sin(t)` `` (several weights in one part) is read as Deforum's notebook did.
4. Inside a sub-prompt, A1111 emphasis: ``(text:1.3)``, ``(text)`` x1.1, ``[text]`` /1.1,
   nested; the weight may be a backtick expression in the schedule language.

Per frame, weights are numbers: a sub-prompt with a negative weight conditions the negative
side. Between keys the prompts cross-fade over ``prompt_blend_frames`` (0 cuts at the key).

``<lora:NAME:W>`` tags are taken out of the text first (:mod:`engine.a1111`). With
``prompt_syntax = "a1111"`` (what the Deforum importer sets) a prompt is read as A1111 reads
it: no scenes and no ``|`` or ``text:weight`` sub-prompts, so colons and bars are text;
``AND`` parts with A1111's ``:weight``; brackets that do not pair up are text; prompt editing
``[from:to:when]`` and alternation ``[a|b]`` switch the text between sampling steps as A1111
schedules them (:meth:`FramePrompt.by_step`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from engine import a1111
from engine.errors import DriftwaveError, PromptError, ScheduleError, notify
from engine.expression import Expression, compile_expression
from engine.schedule import FRAME_VARIABLES, TIMELINE_VARIABLES, Blend, Piece, Timeline, resolve_position
from engine.schedule import split_top_level as _split

Syntax = Literal["driftwave", "a1111"]

EMPHASIS = 1.1
_NUMBER = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*")
_WEIGHT_TOKEN = re.compile(r"\s*(`[^`]*`|[+-]?(?:\d+\.?\d*|\.\d+))")
_AND = re.compile(r"\bAND\b")
_ESCAPES = re.compile(r"\\([()\[\]\\:|`])")


@dataclass(frozen=True)
class Weight:
    """A number times zero or more expressions (emphasis nests multiply)."""

    factor: float = 1.0
    expressions: tuple[Expression, ...] = ()

    def times(self, other: Weight) -> Weight:
        return Weight(self.factor * other.factor, self.expressions + other.expressions)

    def at(self, scope: Mapping[str, float]) -> float:
        value = self.factor
        for expression in self.expressions:
            value *= expression.at(scope)
        return value


@dataclass(frozen=True)
class Chunk:
    """A run of text with one emphasis weight; ``BREAK`` starts a new 75-token chunk (A1111)."""

    text: str
    weight: Weight
    is_break: bool = False


@dataclass(frozen=True)
class SubPrompt:
    source: str  # as written, markup included
    chunks: tuple[Chunk, ...]
    weight: Weight
    edits: Edits | None = None  # A1111 prompt editing / alternation: another text from some step on

    @property
    def plain(self) -> str:
        """What the text encoder reads: markup removed. Encoded once, cached by this text.
        With ``edits``: the text as written; the encoder reads :meth:`by_step`'s sub-prompts."""
        return "".join("" if chunk.is_break else chunk.text for chunk in self.chunks)

    def by_step(self, steps: int) -> list[tuple[int, SubPrompt]]:
        """(last step, sub-prompt) pairs over ``steps`` sampling steps; one pair without edits."""
        return [(steps, self)] if self.edits is None else self.edits.by_step(steps, self.weight)

    def shown(self, scope: Mapping[str, float]) -> str:
        """The source with every backtick weight replaced by its value at ``scope``."""
        return re.sub(r"`[^`]*`", lambda m: _number(_backtick_value(m.group(0), self, scope)), self.source)


@dataclass(frozen=True)
class Edits:
    """A sub-prompt's prompt editing and alternation, parsed as A1111 parses them
    (:func:`engine.a1111.parse_editing`); its texts per step are read like any sub-prompt."""

    tree: tuple
    names: frozenset[str]
    where: str  # the settings field, for errors in a text's weights
    _read: dict = field(default_factory=dict, compare=False, repr=False)

    def by_step(self, steps: int, weight: Weight) -> list[tuple[int, SubPrompt]]:
        pairs = []
        for end, text in a1111.edit_schedule(self.tree, steps):
            if (text, weight) not in self._read:
                self._read[text, weight] = _subprompt(text, weight, self.names, field=self.where, source=text, offset=0)
            pairs.append((end, self._read[text, weight]))
        return pairs


@dataclass(frozen=True)
class Scene:
    """One parsed prompt: positive and negative sub-prompts, and the LoRAs its tags ask for."""

    source: str
    positive: tuple[SubPrompt, ...]
    negative: tuple[SubPrompt, ...]
    loras: tuple[tuple[str, Weight], ...] = ()

    def subprompts(self) -> tuple[SubPrompt, ...]:
        return self.positive + self.negative


@dataclass(frozen=True)
class PromptKey:
    label: str  # the key as written
    position: float
    scene: Scene


@dataclass
class FramePrompt:
    """The conditioning of one frame: (sub-prompt, weight) on each side; weights are numbers."""

    positive: list[tuple[SubPrompt, float]]
    negative: list[tuple[SubPrompt, float]]
    scope: dict[str, float]
    loras: list[tuple[str, float]] = field(default_factory=list)  # (name, weight), weight != 0

    def as_json(self, steps: int | None = None) -> dict[str, list]:
        """The sub-prompts and weights; with ``steps`` and prompt editing, also the text of each
        step range: ``"schedule": [{"until_step": 5, "positive": ..., "negative": ...}, ...]``."""
        shown = {
            "positive": [[sub.shown(self.scope), weight] for sub, weight in self.positive],
            "negative": [[sub.shown(self.scope), weight] for sub, weight in self.negative],
            "loras": [[name, weight] for name, weight in self.loras],
        }
        if steps is not None and self.edited:
            shown["schedule"] = [
                {"until_step": end, **{side: part.as_json()[side] for side in ("positive", "negative")}}
                for end, part in self.by_step(steps)
            ]
        return shown

    @property
    def edited(self) -> bool:
        """Whether a sub-prompt changes between sampling steps (A1111 prompt editing)."""
        return any(sub.edits is not None for sub, _ in self.positive + self.negative)

    def by_step(self, steps: int) -> list[tuple[int, FramePrompt]]:
        """The frame's prompt per sampling step, as A1111 schedules it over ``steps`` steps:
        (last step, prompt without edits) pairs; step ``i`` (from 0) is conditioned by the first
        pair whose last step is ``i`` or later (:func:`engine.a1111.schedule_index`)."""
        if not self.edited:
            return [(steps, self)]
        parts = {sub: sub.by_step(steps) for sub, _ in self.positive + self.negative if sub.edits is not None}
        ends = sorted({end for pairs in parts.values() for end, _ in pairs})

        def at(sub: SubPrompt, step: int) -> SubPrompt:
            if sub.edits is None:
                return sub
            pairs = parts[sub]
            return pairs[a1111.schedule_index([end for end, _ in pairs], step)][1]

        return [
            (
                end,
                FramePrompt(
                    [(at(sub, end), weight) for sub, weight in self.positive],
                    [(at(sub, end), weight) for sub, weight in self.negative],
                    self.scope,
                    self.loras,
                ),
            )
            for end in ends
        ]

    def emphasis(self, sub: SubPrompt) -> list[tuple[str, float]]:
        """Token-level emphasis of ``sub`` at this frame: (text, multiplier) runs."""
        return [(chunk.text, -1.0 if chunk.is_break else chunk.weight.at(self.scope)) for chunk in sub.chunks]


class PromptSchedule:
    """Keyed scenes over a timeline; ``at(frame)`` gives that frame's weighted sub-prompts."""

    def __init__(self, keys: list[PromptKey], timeline: Timeline, blend: Blend, blend_frames: int) -> None:
        self.keys = keys
        self.timeline = timeline
        self.blend = blend
        self.blend_frames = blend_frames
        self.positions = [key.position for key in keys]

    def distinct_texts(self) -> list[str]:
        """Every text the encoder must read, once each."""
        seen = dict.fromkeys(sub.plain for key in self.keys for sub in key.scene.subprompts())
        return list(seen)

    def at(
        self, frame: int, variables: Mapping[str, float] | None = None, *, seconds: float | None = None
    ) -> FramePrompt:
        scope = {
            **self.timeline.constants(self.blend),
            **(variables or {}),
            "t": float(frame),
            "s": frame / self.timeline.fps if seconds is None else seconds,
        }
        positive: dict[SubPrompt, float] = {}
        negative: dict[SubPrompt, float] = {}
        loras: dict[str, float] = {}
        for scene, share in self._mix(frame):
            for name, weight in scene.loras:  # a fading scene's LoRAs fade with it
                loras[name] = loras.get(name, 0.0) + share * weight.at(scope)
            for side, subs in ((1.0, scene.positive), (-1.0, scene.negative)):
                for sub in subs:
                    weight = side * share * sub.weight.at(scope)
                    if not math.isfinite(weight):
                        notify(f"prompts: the weight of {sub.source!r} is not finite at frame {frame}; using 0")
                        continue
                    target = positive if weight > 0 else negative
                    if weight:  # the same sub-prompt in both blended scenes adds up
                        target[sub] = target.get(sub, 0.0) + abs(weight)
        active = [(name, weight) for name, weight in loras.items() if weight and math.isfinite(weight)]
        return FramePrompt(list(positive.items()), list(negative.items()), scope, active)

    def _mix(self, frame: int) -> list[tuple[Scene, float]]:
        """The keyed scenes active at ``frame`` and their shares (summing to 1)."""
        index = max(np.searchsorted(self.positions, frame, side="right") - 1, 0)
        current = self.keys[index]
        if index + 1 >= len(self.keys) or self.blend_frames == 0 or frame < current.position:
            return [(current.scene, 1.0)]
        upcoming = self.keys[index + 1]
        span = upcoming.position - current.position
        window = span if self.blend_frames < 0 else min(self.blend_frames, span)
        start = upcoming.position - window
        if frame <= start:
            return [(current.scene, 1.0)]
        w = (frame - start) / window
        return [(current.scene, 1.0 - w), (upcoming.scene, w)]


@dataclass(frozen=True)
class PromptOptions:
    """The settings that shape how prompt texts are read."""

    scene_prefix: str = ""
    scene_suffix: str = ""
    negative_prompt: str = ""
    blend_frames: int = 0
    syntax: Syntax = "driftwave"


def compile_prompts(
    prompts: Mapping[str, str],
    timeline: Timeline,
    *,
    names: set[str] | frozenset[str] | tuple[str, ...] = (),
    options: PromptOptions = PromptOptions(),
    blend: Blend = "tween",
    field: str = "prompts",
) -> PromptSchedule:
    """Parse every keyed prompt; ``names`` are the extra variables weights may use."""
    if not prompts:
        raise PromptError("there are no prompts", field=field, hint='add one, e.g. prompts = { 0 = "a forest" }')
    allowed = set(FRAME_VARIABLES) | set(TIMELINE_VARIABLES) | set(names)
    keyed: dict[float, tuple[str, str]] = {}
    for label, text in prompts.items():
        position = _key_position(str(label), timeline, field, blend)
        if position in keyed:
            raise PromptError(
                f"keys {keyed[position][0]!r} and {label!r} are both frame {position:g}",
                field=f"{field}.{label}",
                hint="merge the two prompts or move one of them",
            )
        if position >= timeline.frames:
            notify(f"{field}.{label}: frame {position:g} is past the last frame ({timeline.frames - 1})")
        keyed[position] = (str(label), text)
    keys: list[PromptKey] = []
    ordered = sorted(keyed.items())
    for index, (position, (label, text)) in enumerate(ordered):
        until = ordered[index + 1][0] if index + 1 < len(ordered) else max(float(timeline.frames), position + 1)
        scenes = [text] if options.syntax == "a1111" else split_scenes(text, field=f"{field}.{label}")
        step = (until - position) / len(scenes)
        for number, scene_text in enumerate(scenes):
            scene_label = label if number == 0 else f"{label} (scene {number + 1})"
            scene = parse_scene(
                options.scene_prefix + scene_text.strip() + options.scene_suffix,
                allowed,
                field=f"{field}.{label}",
                negative_prompt=options.negative_prompt,
                syntax=options.syntax,
            )
            keys.append(PromptKey(scene_label, position + number * step, scene))
    return PromptSchedule(keys, timeline, blend, options.blend_frames)


def _key_position(label: str, timeline: Timeline, field: str, blend: Blend) -> float:
    try:
        position = resolve_position(Piece(label, 0), timeline, source=label, field=f"{field}.{label}", blend=blend)
        return float(int(position)) if blend == "hold" else position  # Deforum keys are whole frames
    except ScheduleError as error:
        raise _prompt_error(
            error,
            f"{field}.{label}",
            'a prompt key is a frame (30), seconds (2.5s), beats (8b) or an expression of max_f, e.g. "max_f-1"',
        ) from None


def split_scenes(text: str, *, field: str) -> list[str]:
    """``a || b`` -> two scenes; empty scenes are dropped."""
    try:
        scenes = [p.text for p in _split(text, "||", field=field, quotes="`") if p.text.strip()]
    except ScheduleError as error:
        raise _prompt_error(error, field) from None
    return scenes or [""]


def parse_scene(
    text: str,
    names: set[str] | frozenset[str],
    *,
    field: str,
    negative_prompt: str = "",
    syntax: Syntax = "driftwave",
) -> Scene:
    """One prompt (no ``||``): positive and negative sub-prompts with their weights."""
    positive_text, *negative_parts = text.split("--neg")
    negative_text = " ".join(part.strip() for part in negative_parts if part.strip())
    positive_text, loras = _tags(positive_text, names, field=field, source=text)
    negative_text, ignored = _tags(negative_text, names, field=field, source=negative_text)
    if ignored:
        notify(f"{field}: LoRA tags in the negative prompt are removed and not applied (as in A1111)")
    positive = _parse_side(positive_text, names, field=field, source=text, offset=0, syntax=syntax)
    negative = _parse_side(negative_text, names, field=field, source=negative_text, offset=0, syntax=syntax)
    if negative_prompt.strip():
        extra, _ = _tags(negative_prompt, names, field="prompting.negative_prompt", source=negative_prompt)
        negative += _parse_side(
            extra, names, field="prompting.negative_prompt", source=negative_prompt, offset=0, syntax=syntax
        )
    return Scene(text, positive, negative, loras)


def _tags(text: str, names, *, field: str, source: str) -> tuple[str, tuple[tuple[str, Weight], ...]]:
    """``text`` without its extra-network tags, and the LoRAs they ask for with their weights."""
    if "<" not in text:
        return text, ()
    plain, tags = a1111.extract_tags(text)
    loras = []
    for tag in tags:
        if tag.kind not in a1111.LORA_KINDS:
            notify(f"{field}: <{tag.kind}:{tag.name}> is not supported here (only LoRA tags are); it is left out")
            continue
        where = source.find(tag.weight, tag.offset) if tag.weight in source else tag.offset
        loras.append((tag.name, _weight_of(tag.weight, names, field=field, source=source, offset=max(where, 0))))
    return plain, tuple(loras)


def _parse_side(
    text: str, names, *, field: str, source: str, offset: int, syntax: Syntax = "driftwave"
) -> tuple[SubPrompt, ...]:
    if not text.strip():
        return ()
    if syntax == "a1111":
        return _parse_a1111_side(text, names, field=field)
    try:
        pieces = list(_split(text, "|", field=field, quotes="`"))
    except ScheduleError as error:
        raise _prompt_error(error, field) from None
    subprompts: list[SubPrompt] = []
    for piece in pieces:
        start = piece.offset
        for part in _AND.split(piece.text):
            if part.strip():
                subprompts.extend(_weighted(part, names, field=field, source=text, offset=offset + start))
            start += len(part) + 3
    return tuple(subprompts)


def _parse_a1111_side(text: str, names, *, field: str) -> tuple[SubPrompt, ...]:
    """A1111's reading: ``AND`` parts with an optional trailing ``:weight``, emphasis inside; each
    part's prompt editing and alternation switch its text between sampling steps."""
    unpaired = a1111.unpaired_brackets(text)
    if unpaired:
        column = unpaired[0]
        notify(
            f"{field}: {text[column]!r} at column {column + 1} pairs with nothing; read as A1111 reads it "
            "(a stray closing bracket is text, an unclosed one weights the rest)\n  "
            f"{text}\n  {' ' * column}^"
        )
    subprompts = []
    for part, start, weight in a1111.and_parts(text):
        if part.strip():
            factor = Weight(float(weight)) if weight is not None else Weight()
            sub = _subprompt(part, factor, names, field=field, source=text, offset=start)
            tree = a1111.parse_editing(part)
            if tree is not None:  # shown as written; the encoder reads the text of each step
                edits = Edits(tree, frozenset(names), field)
                sub = dataclasses.replace(sub, chunks=(Chunk(sub.source, Weight()),), edits=edits)
            subprompts.append(sub)
    return tuple(subprompts)


def _weighted(text: str, names, *, field: str, source: str, offset: int) -> list[SubPrompt]:
    """``text:weight`` parts of one ``|`` piece."""
    colons = [p.offset for p in _split(text, ":", field=field, quotes="`")][1:]
    colons = [c - 1 for c in colons]  # offsets of the ':' characters
    if not colons:
        return [_subprompt(text, Weight(), names, field=field, source=source, offset=offset)]
    if len(colons) == 1:
        body, weight_text = text[: colons[0]], text[colons[0] + 1 :]
        weight = _single_weight(weight_text, names, field=field, source=source, offset=offset + colons[0] + 1)
        if weight is None:  # "style: impressionism" -- the colon is part of the text
            return [_subprompt(text, Weight(), names, field=field, source=source, offset=offset)]
        return [_subprompt(body, weight, names, field=field, source=source, offset=offset)]
    return _notebook_sequence(text, colons, names, field=field, source=source, offset=offset)


def _notebook_sequence(text: str, colons: list[int], names, *, field, source, offset) -> list[SubPrompt]:
    """Deforum notebook style: ``eggs:`cos(t)`, bacon:`-cos(t)``` -- a weight after every colon."""
    parts: list[SubPrompt] = []
    body_start = 0
    for colon in colons:
        body = text[body_start:colon].lstrip(" ,")
        match = _WEIGHT_TOKEN.match(text, colon + 1)
        if match is None or (colons[-1] != colon and match.end() > colons[colons.index(colon) + 1]):
            raise PromptError(
                "cannot tell where one weighted part ends and the next begins",
                field=field,
                source=source,
                offset=offset + colon,
                hint="separate sub-prompts with |, e.g. eggs: 2 | bacon: -1 (write \\: for a colon in the text)",
            )
        token = match.group(1)
        weight = _weight_of(token, names, field=field, source=source, offset=offset + match.start(1))
        parts.append(_subprompt(body, weight, names, field=field, source=source, offset=offset + body_start))
        body_start = match.end()
    rest = text[body_start:].lstrip(" ,")
    if rest.strip():
        parts.append(_subprompt(rest, Weight(), names, field=field, source=source, offset=offset + body_start))
    return parts


def _single_weight(text: str, names, *, field: str, source: str, offset: int) -> Weight | None:
    """The weight after ``text:``; None when what follows the colon is prose, not a weight."""
    stripped = text.strip()
    if not stripped:
        return Weight()  # "text:" -- weight 1, as Deforum's notebook read it
    lead = offset + len(text) - len(text.lstrip())
    if stripped.startswith("`") and stripped.endswith("`") and len(stripped) >= 2:
        return _weight_of(stripped, names, field=field, source=source, offset=lead)
    if stripped.isidentifier() and stripped not in names:
        if difflib.get_close_matches(stripped, names, n=1, cutoff=0.75):
            return _weight_of(stripped, names, field=field, source=source, offset=lead)  # a typo: say so
        return None
    try:
        return _weight_of(stripped, names, field=field, source=source, offset=lead)
    except PromptError as error:
        if error.message.startswith("cannot read this expression"):
            return None  # not an expression at all: prose containing a colon
        raise


def _weight_of(token: str, names, *, field: str, source: str, offset: int) -> Weight:
    if token.startswith("`"):
        token, offset = token[1:-1], offset + 1
    number = _NUMBER.fullmatch(token)
    if number:
        return Weight(float(number.group(1)))
    try:
        expression = compile_expression(token, set(names), offset=offset, whole=source)
    except ScheduleError as error:
        raise _prompt_error(error, field) from None
    if expression.constant is not None:
        return Weight(expression.constant)
    return Weight(1.0, (expression,))


def _subprompt(text: str, weight: Weight, names, *, field: str, source: str, offset: int) -> SubPrompt:
    stripped = text.strip()
    lead = offset + len(text) - len(text.lstrip())
    chunks = parse_emphasis(stripped, names, field=field, source=source, offset=lead)
    return SubPrompt(_ESCAPES.sub(r"\1", stripped) if "\\" in stripped else stripped, chunks, weight)


_ATTENTION = re.compile(
    r"\\[()\[\]\\:|`]|\(|\[|:\s*([+-]?[.\d]+|`[^`]*`)\s*\)|\)|]|[^\\()\[\]:]+|:|\\",
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_emphasis(text: str, names, *, field: str, source: str, offset: int) -> tuple[Chunk, ...]:
    """A1111's ``parse_prompt_attention``, with backtick expressions allowed as weights."""
    result: list[list] = []  # [text, Weight, is_break]
    round_brackets: list[int] = []
    square_brackets: list[int] = []

    def multiply_range(start: int, weight: Weight) -> None:
        for entry in result[start:]:
            entry[1] = entry[1].times(weight)

    for match in _ATTENTION.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\") and len(token) == 2:
            result.append([token[1], Weight(), False])
        elif token == "(":
            round_brackets.append(len(result))
        elif token == "[":
            square_brackets.append(len(result))
        elif weight is not None and round_brackets:
            where = offset + match.start(1)
            multiply_range(round_brackets.pop(), _weight_of(weight, names, field=field, source=source, offset=where))
        elif token == ")" and round_brackets:
            multiply_range(round_brackets.pop(), Weight(EMPHASIS))
        elif token == "]" and square_brackets:
            multiply_range(square_brackets.pop(), Weight(1 / EMPHASIS))
        else:
            for number, part in enumerate(_BREAK.split(token)):
                if number:
                    result.append(["BREAK", Weight(), True])
                result.append([part, Weight(), False])
    for start in round_brackets:
        multiply_range(start, Weight(EMPHASIS))
    for start in square_brackets:
        multiply_range(start, Weight(1 / EMPHASIS))
    merged: list[list] = []
    for entry in result:
        if not entry[0] and not entry[2]:
            continue
        if merged and not entry[2] and not merged[-1][2] and merged[-1][1] == entry[1]:
            merged[-1][0] += entry[0]
        else:
            merged.append(entry)
    return tuple(Chunk(text, weight, is_break) for text, weight, is_break in merged) or (Chunk("", Weight()),)


def _backtick_value(token: str, sub: SubPrompt, scope: Mapping[str, float]) -> float:
    inner = token[1:-1].strip()
    number = _NUMBER.fullmatch(inner)
    if number:
        return float(number.group(1))
    for expression in (*sub.weight.expressions, *(e for c in sub.chunks for e in c.weight.expressions)):
        if expression.source == inner:
            return expression.at(scope)
    return float("nan")


def _number(value: float) -> str:
    return f"{value:.6g}"


def _prompt_error(error: DriftwaveError, field: str, hint: str | None = None) -> PromptError:
    return PromptError(
        error.message,
        field=error.field or field,
        source=error.source,
        offset=error.offset,
        keyframe=error.keyframe,
        hint=hint or error.hint,
    )
