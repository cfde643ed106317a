"""The grammar of Deforum's mask expressions (``mask_schedule``, ``noise_mask_schedule``).

Variables in braces (``{init_mask}``, ``{video_mask}``, ``{human_mask}``, ``{everywhere}``),
image files in brackets (``[mask.png]``) and words in angle brackets (``<a red car>``), joined
by ``!`` (not), ``&`` (and), ``|`` (or), ``^`` (xor) and ``\\`` (difference) with parentheses; an
empty value is everywhere. Deforum applies the operators in that order (``!`` first, ``\\``
last) and so does this parser. No torch here: the plan and the TUI check expressions with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import DriftwaveError

VARIABLES = ("everywhere", "init_mask", "video_mask", "human_mask")
_OPERATORS = ("\\", "^", "|", "&")  # lowest binding first
_LEAF = re.compile(r"\{(?P<var>[^{}]*)\}|\[(?P<file>[^\[\]]*)\]|<(?P<word>[^<>]*)>")


@dataclass(frozen=True)
class Leaf:
    """One mask the expression names: ``kind`` is var, file or word."""

    kind: str
    value: str

    def __str__(self) -> str:
        opening, closing = {"var": "{}", "file": "[]", "word": "<>"}[self.kind]
        return f"{opening}{self.value}{closing}"


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class Binary:
    operator: str
    left: Node
    right: Node


Node = Leaf | Not | Binary


class MaskSyntaxError(DriftwaveError):
    pass


def parse_mask(text: str, *, field: str | None = None) -> Node:
    """The expression ``text`` as a tree; a clear error naming ``field`` and the position."""
    tokens = _tokens(text, field)
    if not tokens:
        return Leaf("var", "everywhere")
    parser = _Parser(text, tokens, field)
    node = parser.expression(0)
    if parser.index < len(tokens):
        parser.fail(f"unexpected {str(tokens[parser.index][1])!r}", tokens[parser.index][0])
    return node


def leaves(node: Node) -> set[Leaf]:
    if isinstance(node, Leaf):
        return {node}
    if isinstance(node, Not):
        return leaves(node.operand)
    return leaves(node.left) | leaves(node.right)


def _tokens(text: str, field: str | None) -> list[tuple[int, str | Leaf]]:
    """(offset, token): leaves, operators and parentheses, spaces skipped."""
    tokens: list[tuple[int, str | Leaf]] = []
    position = 0
    while position < len(text):
        character = text[position]
        if character.isspace():
            position += 1
        elif character in "!()" or character in _OPERATORS:
            tokens.append((position, character))
            position += 1
        elif (match := _LEAF.match(text, position)) is not None:
            kind = match.lastgroup
            value = match.group(kind).strip()
            if kind == "var" and value not in VARIABLES:
                raise MaskSyntaxError(
                    f"unknown mask {{{value}}} in {text!r}",
                    field=field,
                    hint=f"masks: {', '.join('{' + name + '}' for name in VARIABLES)}, [file.png], <words>",
                )
            tokens.append((position, Leaf(kind, value)))
            position = match.end()
        else:
            raise MaskSyntaxError(
                f"unexpected {character!r} at {position} in {text!r}",
                field=field,
                hint="combine {masks}, [files] and <words> with ! & | ^ \\ and parentheses",
            )
    return tokens


class _Parser:
    """Recursive descent over the tokens, one level per operator (``&`` binds tightest)."""

    def __init__(self, text: str, tokens: list[tuple[int, str | Leaf]], field: str | None) -> None:
        self.text, self.tokens, self.field, self.index = text, tokens, field, 0

    def fail(self, message: str, offset: int) -> None:
        raise MaskSyntaxError(
            f"{message} at {offset} in {self.text!r}",
            field=self.field,
            hint="combine {masks}, [files] and <words> with ! & | ^ \\ and parentheses",
        )

    def peek(self) -> str | Leaf | None:
        return self.tokens[self.index][1] if self.index < len(self.tokens) else None

    def expression(self, level: int) -> Node:
        if level == len(_OPERATORS):
            return self.unary()
        node = self.expression(level + 1)
        while self.peek() == _OPERATORS[level]:
            self.index += 1
            node = Binary(_OPERATORS[level], node, self.expression(level + 1))
        return node

    def unary(self) -> Node:
        token = self.peek()
        if token == "!":
            self.index += 1
            return Not(self.unary())
        if token == "(":
            start = self.tokens[self.index][0]
            self.index += 1
            node = self.expression(0)
            if self.peek() != ")":
                self.fail("unclosed parenthesis", start)
            self.index += 1
            return node
        if isinstance(token, Leaf):
            self.index += 1
            return token
        offset = self.tokens[self.index][0] if token is not None else len(self.text)
        self.fail("a mask is missing" if token is None else f"unexpected {str(token)!r}", offset)
        raise AssertionError  # fail raises
