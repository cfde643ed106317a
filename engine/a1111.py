"""A1111's prompt syntax where it is more than emphasis: extra-network tags, ``AND`` weights,
prompt editing and alternation, and brackets that do not pair up.

``<lora:NAME:W>`` (and ``<lyco:...>``, its alias) asks for a LoRA at weight W, ``<hypernet:...>``
for a hypernetwork; A1111 removes every ``<kind:args>`` tag from the text before the text
encoder reads it (``modules/extra_networks.py``, ``re_extra_net``), and so does this module.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# A1111's re_extra_net: any "<word:args>" is an extra-network tag
EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")
LORA_KINDS = ("lora", "lyco")
# A1111's re_weight for "text :1.2" after AND
AND_WEIGHT = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")
AND = re.compile(r"\bAND\b")


@dataclass(frozen=True)
class Tag:
    """One extra-network tag as written: kind, name, weight text (A1111's first number)."""

    kind: str
    name: str
    weight: str
    offset: int  # where the tag starts in the prompt


def extract_tags(text: str) -> tuple[str, list[Tag]]:
    """The text without its ``<kind:name:weight>`` tags, and the tags.

    The weight is A1111's: the second positional argument (``te=`` if named), 1 when absent.
    """
    tags = []
    for match in EXTRA_NETWORK.finditer(text):
        kind, args = match.group(1).lower(), match.group(2)
        name, *rest = args.split(":")
        named = dict(part.split("=", 1) for part in rest if "=" in part)
        positional = [part for part in rest if "=" not in part]
        weight = named.get("te", positional[0] if positional else "1")
        tags.append(Tag(kind, name.strip(), weight.strip(), match.start()))
    return EXTRA_NETWORK.sub("", text), tags


def and_parts(text: str) -> list[tuple[str, int, str | None]]:
    """``a AND b :0.5`` -> (text, offset, weight text or None) per part, as A1111 splits it."""
    parts, start = [], 0
    for piece in AND.split(text):
        match = AND_WEIGHT.match(piece)
        parts.append((match.group(1), start, match.group(2)))
        start += len(piece) + 3
    return parts


# -- prompt editing and alternation: A1111's modules/prompt_parser.py ---------------------------------
#
# A1111 parses each AND part with this lark grammar (get_learned_conditioning_prompt_schedules):
#
#   !start: (prompt | /[][():]/+)*
#   prompt: (emphasized | scheduled | alternate | plain | WHITESPACE)*
#   !emphasized: "(" prompt ")" | "(" prompt ":" prompt ")" | "[" prompt "]"
#   scheduled: "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
#   alternate: "[" prompt ("|" [prompt])+ "]"
#   plain: /([^\\\[\]():|]|\\.)+/
#
# and reads a text that does not parse (a "|" outside [a|b], a trailing backslash) as it is, for
# every step. The parser below accepts the same language: brackets that open no construct are
# text only outside every construct, as in ``start``. Where lark's Earley parser has two readings
# it keeps one by its own ranking; here the construct wins. That differs only when unpaired
# brackets or colons follow a construct outside every bracket: A1111 reads "[a:1]]]" (two) as
# plain text, "[a:1]]" and "[a:1]]:]" as editing; here all three are editing.

SECOND_ORDER = frozenset(
    {"heun", "dpm2", "dpm2_karras", "dpm2_a", "dpm2_a_karras", "dpmpp_2s_a", "dpmpp_2s_a_karras"}
    | {"dpmpp_sde", "dpmpp_sde_karras"}
)  # A1111's samplers with "second_order": True: their step counter counts two model calls a step
_NUMBER = re.compile(
    r"[+-]?(?:[0-9]+[eE][+-]?[0-9]+|(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[0-9]+)"
)  # lark's SIGNED_NUMBER
_PLAIN = re.compile(r"(?:[^\\\[\]():|]|\\.)+")
_SPACE = re.compile(r"\s*")


@dataclass(frozen=True)
class Edit:
    """``[before:after:when]``: ``before`` (None when not written) up to step ``when``, then ``after``."""

    before: Node | None
    after: Node
    when: str  # the number as written: a fraction of the steps if it has a ".", else a step


@dataclass(frozen=True)
class Alternation:
    """``[a|b|c]``: one option per step, in turn (None for an empty one)."""

    options: tuple[Node | None, ...]


Node = str | tuple  # text, or a sequence of str | Edit | Alternation


class _Unparsed(Exception):
    pass


def parse_editing(text: str) -> tuple | None:
    """The text as A1111's scheduling grammar reads it, or None when it has no prompt editing or
    alternation (or does not parse, which A1111 also reads as one plain text)."""
    if "[" not in text:
        return None
    try:
        tree = _Parser(text).start()
    except _Unparsed:
        return None
    return tree if any(not isinstance(node, str) for node in _walk(tree)) else None


def edit_schedule(tree: tuple, steps: int) -> list[tuple[int, str]]:
    """A1111's prompt schedule of ``tree`` over ``steps``: (last step, text) pairs, the texts in
    force up to and including that step (``get_learned_conditioning_prompt_schedules``)."""
    ends = {steps}
    for node in _walk(tree):
        if isinstance(node, Edit):
            when = _when(node.when, steps)
            if when >= 1:
                ends.add(when)
        elif isinstance(node, Alternation):
            ends.update(range(1, steps + 1))
    return [(end, _text_at(tree, end, steps)) for end in sorted(ends)]


def prompt_schedule(text: str, steps: int) -> list[tuple[int, str]]:
    """The schedule of one prompt text: ``[(steps, text)]`` when it has no editing."""
    tree = parse_editing(text)
    return [(steps, text)] if tree is None else edit_schedule(tree, steps)


def total_steps(steps: int, sampler: str) -> int:
    """The steps A1111 builds the schedules over: its denoiser counts model calls, two a step for
    second-order samplers (``SamplerData.total_steps``)."""
    return steps * 2 if sampler in SECOND_ORDER else steps


def schedule_index(ends: list[int], step: int) -> int:
    """Which schedule entry conditions step ``step`` (0-based): the first whose end is at or past
    it, else the first (A1111's ``reconstruct_cond_batch``)."""
    for index, end in enumerate(ends):
        if step <= end:
            return index
    return 0


def _when(number: str, steps: int) -> int:
    value = float(number)
    if "." in number:
        value *= steps
    if not math.isfinite(value):  # "1e999": A1111 raises here; read it as "never" / "always"
        return steps if value > 0 else -1
    return min(steps, int(value))


def _walk(node):
    if isinstance(node, tuple):
        for child in node:
            yield from _walk(child)
    elif isinstance(node, Edit):
        yield node
        yield from _walk(node.before)
        yield from _walk(node.after)
    elif isinstance(node, Alternation):
        yield node
        for option in node.options:
            yield from _walk(option)
    elif node is not None:
        yield node


def _text_at(node, step: int, steps: int) -> str:
    if node is None:
        return ""
    if isinstance(node, str):
        return node
    if isinstance(node, Edit):
        return _text_at(node.before if step <= _when(node.when, steps) else node.after, step, steps)
    if isinstance(node, Alternation):
        return _text_at(node.options[(step - 1) % len(node.options)], step, steps)
    return "".join(_text_at(child, step, steps) for child in node)


class _Parser:
    """Recursive descent over A1111's grammar; a construct that fails is text at the top level."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.constructs: dict[int, tuple[object, int] | None] = {}

    def start(self) -> tuple:
        text, index, nodes = self.text, 0, []
        while index < len(text):
            char = text[index]
            if char in "([":
                parsed = self.construct(index)
                if parsed is not None:
                    nodes.append(parsed[0])
                    index = parsed[1]
                    continue
            if char in "[]():":
                nodes.append(char)  # a bracket or colon that opens nothing
                index += 1
                continue
            match = _PLAIN.match(text, index)
            if match is None:  # "|" outside [a|b], or a backslash with nothing after it
                raise _Unparsed
            nodes.append(match.group(0))
            index = match.end()
        return tuple(nodes)

    def prompt(self, index: int) -> tuple[tuple, int]:
        """The longest ``prompt`` from ``index``: text and constructs, up to a ``: | ] )``."""
        text, nodes = self.text, []
        while index < len(text):
            if text[index] in "([":
                parsed = self.construct(index)
                if parsed is None:
                    break
                nodes.append(parsed[0])
                index = parsed[1]
                continue
            match = _PLAIN.match(text, index)
            if match is None:
                break
            nodes.append(match.group(0))
            index = match.end()
        return tuple(nodes), index

    def construct(self, index: int) -> tuple[object, int] | None:
        if index not in self.constructs:
            self.constructs[index] = self._construct(index)
        return self.constructs[index]

    def _construct(self, index: int) -> tuple[object, int] | None:
        text = self.text
        opening = text[index]
        first, at = self.prompt(index + 1)
        following = text[at : at + 1]
        if opening == "(":  # emphasis: kept as text, read again after scheduling
            if following == ")":
                return ("(", *first, ")"), at + 1
            if following == ":":
                second, end = self.prompt(at + 1)
                if text[end : end + 1] == ")":
                    return ("(", *first, ":", *second, ")"), end + 1
            return None
        if following == "]":
            return ("[", *first, "]"), at + 1
        if following == "|":
            options = [first]
            while text[at : at + 1] == "|":
                option, at = self.prompt(at + 1)
                options.append(option)
            if text[at : at + 1] == "]":
                return Alternation(tuple(options)), at + 1
            return None
        if following == ":":
            when = self._number(at + 1)
            if when is not None:  # [to:when]
                return Edit(None, first, when[0]), when[1]
            second, at = self.prompt(at + 1)
            if text[at : at + 1] == ":":
                when = self._number(at + 1)
                if when is not None:  # [from:to:when]
                    return Edit(first, second, when[0]), when[1]
        return None

    def _number(self, index: int) -> tuple[str, int] | None:
        """``[WHITESPACE] NUMBER [WHITESPACE] "]"`` from ``index``: the number and the end."""
        index = _SPACE.match(self.text, index).end()
        match = _NUMBER.match(self.text, index)
        if match is None:
            return None
        end = _SPACE.match(self.text, match.end()).end()
        return (match.group(0), end + 1) if self.text[end : end + 1] == "]" else None


def unpaired_brackets(text: str) -> list[int]:
    """Offsets of ``)`` and ``]`` that close nothing, and of ``(`` and ``[`` never closed: A1111
    reads the first as text and applies the second to the rest of the prompt."""
    open_at: dict[str, list[int]] = {"(": [], "[": []}
    unpaired = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char in open_at:
            open_at[char].append(index)
        elif char in ")]":
            opened = open_at["(" if char == ")" else "["]  # one stack per kind, as A1111 keeps them
            if opened:
                opened.pop()
            else:
                unpaired.append(index)
        index += 1
    return sorted(unpaired + open_at["("] + open_at["["])
