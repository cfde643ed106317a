"""A1111's prompt syntax where it is more than emphasis: extra-network tags, ``AND`` weights,
prompt editing and alternation, and brackets that do not pair up.

``<lora:NAME:W>`` (and ``<lyco:...>``, its alias) asks for a LoRA at weight W, ``<hypernet:...>``
for a hypernetwork; A1111 removes every ``<kind:args>`` tag from the text before the text
encoder reads it (``modules/extra_networks.py``, ``re_extra_net``), and so does this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A1111's re_extra_net: any "<word:args>" is an extra-network tag
EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")
LORA_KINDS = ("lora", "lyco")
# A1111's re_weight for "text :1.2" after AND
AND_WEIGHT = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")
AND = re.compile(r"\bAND\b")
# prompt editing [from:to:when], [to:when], [from::when]; alternation [a|b|c] (no nesting)
EDITING = re.compile(r"(?<!\\)\[([^\[\]:|]*):([^\[\]:|]*)(?::\s*([-+]?(?:\d+\.?\d*|\.\d+))\s*)?\]")
ALTERNATION = re.compile(r"(?<!\\)\[([^\[\]:|]*(?:\|[^\[\]:|]*)+)\]")


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


def resolve_editing(text: str) -> tuple[str, list[str]]:
    """Prompt editing and alternation read as one text per frame, and what was changed.

    A1111 switches ``[from:to:when]`` at a sampling step and alternates ``[a|b]`` every step;
    here the frame uses the text that holds for most of its steps: ``to`` when ``when`` is a
    fraction below 0.5, ``from`` otherwise (a step number is taken as past half), and the first
    alternative.
    """
    changed: list[str] = []

    def edit(match: re.Match) -> str:
        first, second, when = match.group(1), match.group(2), match.group(3)
        if when is None:  # [to:when]: "second" is the step, "first" the text added then
            first, second, when = "", first, second
        try:
            position = float(when)
        except ValueError:
            return match.group(0)
        changed.append(match.group(0))
        return second if position < 0.5 else first

    def alternate(match: re.Match) -> str:
        changed.append(match.group(0))
        return match.group(1).split("|")[0]

    text = EDITING.sub(edit, text)
    text = ALTERNATION.sub(alternate, text)
    return text, changed


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
