"""Math expressions of the schedule language: allow-listed, compiled once, evaluated two ways.

An expression such as ``10*sin(2*pi*t/10) + 0.05*fLo`` is parsed with :mod:`ast`, checked
against an allow-list of names, functions and syntax, and translated into one numexpr string.
That string is evaluated vectorised over all frames with numexpr, or for one frame at a time
(live mode) as Python code over numpy scalars, which follow the same rules (floor ``%``,
IEEE division, banker's ``round``), so both paths agree.
"""

from __future__ import annotations

import ast
import difflib
import math
import re
import warnings
from collections.abc import Mapping

import numpy as np

from engine.errors import ScheduleError

CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}

_ONE_ARGUMENT = (
    "sin cos tan arcsin arccos arctan sinh cosh tanh arcsinh arccosh arctanh "
    "exp expm1 log log10 log2 log1p sqrt abs floor ceil round trunc sign"
).split()
# name users write -> (numexpr name, number of arguments); None = any number >= 2
FUNCTIONS: dict[str, tuple[str, int | None]] = {
    **{name: (name, 1) for name in _ONE_ARGUMENT},
    "asin": ("arcsin", 1),
    "acos": ("arccos", 1),
    "atan": ("arctan", 1),
    "arctan2": ("arctan2", 2),
    "atan2": ("arctan2", 2),
    "hypot": ("hypot", 2),
    "fmod": ("fmod", 2),
    "copysign": ("copysign", 2),
    "where": ("where", 3),
    "pow": ("pow", 2),
    "min": ("minimum", None),
    "max": ("maximum", None),
    "minimum": ("minimum", None),
    "maximum": ("maximum", None),
    "clip": ("clip", 3),
    "fract": ("fract", 1),
}

_BINARY_OPERATORS = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
}
_LOGIC_OPERATORS = {ast.BitAnd: "&", ast.BitOr: "|", ast.And: "&", ast.Or: "|"}
_COMPARISONS = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
}

# numpy counterparts of every numexpr function the translation can emit (scalar path)
_NON_FINITE = {"_nan": np.nan, "_inf": np.inf}  # numexpr has no names for these: they travel as variables
_SCALAR_NAMESPACE = {
    name: getattr(np, name) for name in {target for target, _ in FUNCTIONS.values()} - {"pow", "clip", "fract"}
} | {"__builtins__": {}, "F": np.float64, **_NON_FINITE}


class Expression:
    """One compiled expression. ``names`` are the variables it reads."""

    def __init__(self, source: str, code: str, names: frozenset[str], *, constant: float | None = None) -> None:
        self.source = source
        self.code = code
        self.names = names
        self._scalar_code = None  # compiled on first use by ``at``
        self.constant = constant
        if constant is None and not names:
            self.constant = self.at({})

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    def evaluate(self, variables: Mapping[str, np.ndarray | float], length: int) -> np.ndarray:
        """Values over ``length`` frames; array variables must have that length."""
        if self.constant is not None:
            return np.full(length, self.constant)
        import numexpr  # imported on first use: the TUI paints before it needs it

        local = {name: variables[name] for name in self.names} | _NON_FINITE
        with np.errstate(all="ignore"):
            result = numexpr.evaluate(self.code, local_dict=local, global_dict={})
        return np.broadcast_to(np.asarray(result, dtype=np.float64), (length,)).copy()

    def at(self, variables: Mapping[str, float]) -> float:
        """Value for one frame, every variable a scalar: the live-mode path."""
        if self.constant is not None:
            return self.constant
        if self._scalar_code is None:
            self._scalar_code = _scalar_code(self.code)
        local = {name: np.float64(variables[name]) for name in self.names}
        with np.errstate(all="ignore"):
            return float(eval(self._scalar_code, _SCALAR_NAMESPACE, local))


class _NumpyNumbers(ast.NodeTransformer):
    """Literal floats -> ``F(x)`` (numpy float64) so the scalar path follows IEEE like numexpr."""

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, float):
            return ast.copy_location(ast.Call(ast.Name("F", ast.Load()), [node], []), node)
        return node


def _scalar_code(code: str):
    tree = ast.fix_missing_locations(_NumpyNumbers().visit(ast.parse(code, mode="eval")))
    return compile(tree, "<expression>", "eval")


def compile_expression(
    source: str,
    names: set[str] | frozenset[str],
    *,
    offset: int = 0,
    whole: str | None = None,
) -> Expression:
    """Check ``source`` against the allow-list and compile it.

    ``names`` are the variables it may read; ``offset`` is where ``source`` starts inside
    ``whole`` (the full schedule text), so errors point at the right column.
    """
    whole = source if whole is None else whole
    stripped = source.strip()
    lead = offset + (len(source) - len(source.lstrip()))
    if not stripped:
        raise ScheduleError(
            "empty expression", source=whole, offset=offset, hint="write a number or an expression of t"
        )
    text = stripped.replace("\r", " ").replace("\n", " ")  # same length: columns stay true
    if _PLAIN_NUMBER.fullmatch(text):
        return Expression(stripped, text, frozenset(), constant=float(text))
    key = (text, frozenset(names))
    if key in _COMPILED:
        return _COMPILED[key]
    try:
        with warnings.catch_warnings():  # the parser's own warnings ("invalid decimal literal") stay silent
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)  # invalid escape sequence (3.11)
            tree = ast.parse(text, mode="eval")
        translator = _Translator(frozenset(names), whole, lead, text)
        code, kind = translator.visit(tree.body)
    except SyntaxError as error:
        column = _character_column(text, max((error.offset or 1) - 1, 0), in_bytes=False)
        raise ScheduleError(
            f"cannot read this expression ({error.msg})",
            source=whole,
            offset=lead + column,
            hint="expressions look like 0.5*sin(2*pi*t/30) + 1",
        ) from None
    except (RecursionError, MemoryError):
        raise ScheduleError(
            "this expression is nested too deeply", source=whole, offset=lead, hint="simplify it"
        ) from None
    if kind == "bool":
        code = f"where({code}, 1.0, 0.0)"
    expression = Expression(stripped, code, frozenset(translator.used))
    try:
        expression.evaluate(dict.fromkeys(expression.names, np.zeros(1)), 1)
    except Exception as error:  # numexpr's own limits (size, registers)
        raise ScheduleError(
            f"this expression cannot be evaluated ({error})", source=whole, offset=lead, hint="simplify it"
        ) from None
    if len(_COMPILED) >= _COMPILED_KEPT:
        _COMPILED.clear()
    _COMPILED[key] = expression
    return expression


_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]{1,20}(?:\.[0-9]{1,20})?|\.[0-9]{1,20})")
_COMPILED: dict[tuple[str, frozenset[str]], Expression] = {}  # equal expressions compile once
_COMPILED_KEPT = 4096


def _character_column(text: str, column: int, *, in_bytes: bool) -> int:
    """Turn an ast/SyntaxError column into a character index (ast counts UTF-8 bytes)."""
    if in_bytes:
        column = len(text.encode()[:column].decode(errors="ignore"))
    return min(column, len(text))


class _Translator:
    """Walks an allow-listed AST and writes the numexpr string, tracking bool vs number."""

    def __init__(self, names: frozenset[str], whole: str, offset: int, text: str) -> None:
        self.names = names
        self.whole = whole
        self.offset = offset
        self.text = text
        self.used: set[str] = set()

    def fail(self, node: ast.AST, message: str, hint: str | None = None) -> ScheduleError:
        column = _character_column(self.text, getattr(node, "col_offset", 0), in_bytes=True)
        return ScheduleError(message, source=self.whole, offset=self.offset + column, hint=hint)

    def visit(self, node: ast.AST) -> tuple[str, str]:
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is None:
            raise self.fail(node, f"{_describe(node)} is not allowed in an expression", _ALLOWED_HINT)
        code, kind = method(node)
        if kind == "number" and not isinstance(node, ast.Constant | ast.Name) and not _has_variables(node):
            code = _literal(_scalar_value(code))  # fold here, with numpy's rules, not Python's as numexpr would
        return code, kind

    def number(self, node: ast.AST) -> str:
        code, kind = self.visit(node)
        return f"where({code}, 1.0, 0.0)" if kind == "bool" else code

    def boolean(self, node: ast.AST) -> str:
        code, kind = self.visit(node)
        return code if kind == "bool" else f"({code} != 0.0)"

    def visit_Constant(self, node: ast.Constant) -> tuple[str, str]:
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise self.fail(node, f"{node.value!r} is not a number", "only numbers and names like t")
        try:
            value = float(node.value)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value):
            raise self.fail(node, "this number is too large", "numbers must be below 1e308")
        return repr(value), "number"

    def visit_Name(self, node: ast.Name) -> tuple[str, str]:
        if node.id in CONSTANTS:
            return repr(CONSTANTS[node.id]), "number"
        if node.id in self.names:
            self.used.add(node.id)
            return node.id, "number"
        if node.id in FUNCTIONS:
            raise self.fail(node, f"{node.id} is a function: call it like {node.id}(t)")
        known = sorted(self.names | set(CONSTANTS))
        close = difflib.get_close_matches(node.id, known, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise self.fail(node, f"unknown variable {node.id!r}", f"{hint}known names: {', '.join(known)}")

    def visit_BinOp(self, node: ast.BinOp) -> tuple[str, str]:
        if type(node.op) in _LOGIC_OPERATORS:
            operator = _LOGIC_OPERATORS[type(node.op)]
            return f"({self.boolean(node.left)} {operator} {self.boolean(node.right)})", "bool"
        operator = _BINARY_OPERATORS.get(type(node.op))
        if operator is None:
            raise self.fail(node, f"the operator {_describe(node.op)} is not allowed", _ALLOWED_HINT)
        left, right = self.number(node.left), self.number(node.right)
        if operator not in ("/", "//", "%"):
            return f"({left} {operator} {right})", "number"
        quotient = self.divide(node.right, left, right)
        if operator == "/":
            return quotient, "number"
        if operator == "//":
            return f"floor({quotient})", "number"
        return f"({left} - floor({quotient}) * {right})", "number"

    def divide(self, node: ast.AST, left: str, right: str) -> str:
        """``left / right`` as numexpr computes it: by a constant, it multiplies by 1/constant.

        Writing that out keeps the scalar path bit-identical; % and // are built on it.
        """
        if any(isinstance(n, ast.Name) and n.id not in CONSTANTS for n in ast.walk(node)):
            return f"({left} / {right})"
        with np.errstate(all="ignore"):
            divisor = float(eval(_scalar_code(right), _SCALAR_NAMESPACE, {}))
        if divisor == 0.0:
            raise self.fail(node, "division by zero", "divide by something that is not 0")
        with np.errstate(all="ignore"):
            reciprocal = float(np.float64(1.0) / np.float64(divisor))
        if not np.isfinite(reciprocal):
            raise self.fail(node, f"dividing by {divisor:g} overflows", "divide by a larger number")
        return f"({left} * {reciprocal!r})"

    def visit_UnaryOp(self, node: ast.UnaryOp) -> tuple[str, str]:
        if isinstance(node.op, ast.Not | ast.Invert):  # not ~: numexpr folds ~True to -2
            return f"({self.number(node.operand)} == 0.0)", "bool"
        sign = "-" if isinstance(node.op, ast.USub) else ""
        return f"({sign}{self.number(node.operand)})", "number"

    def visit_BoolOp(self, node: ast.BoolOp) -> tuple[str, str]:
        operator = _LOGIC_OPERATORS[type(node.op)]
        return "(" + f" {operator} ".join(self.boolean(value) for value in node.values) + ")", "bool"

    def visit_Compare(self, node: ast.Compare) -> tuple[str, str]:
        parts, left = [], self.number(node.left)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            if type(op) not in _COMPARISONS:
                raise self.fail(node, f"the comparison {_describe(op)} is not allowed", _ALLOWED_HINT)
            right = self.number(comparator)
            parts.append(f"({left} {_COMPARISONS[type(op)]} {right})")
            left = right
        return "(" + " & ".join(parts) + ")", "bool"

    def visit_IfExp(self, node: ast.IfExp) -> tuple[str, str]:
        return f"where({self.boolean(node.test)}, {self.number(node.body)}, {self.number(node.orelse)})", "number"

    def visit_Call(self, node: ast.Call) -> tuple[str, str]:
        if not isinstance(node.func, ast.Name):
            raise self.fail(node, "only plain function calls like sin(t) are allowed", _ALLOWED_HINT)
        name = node.func.id
        if name not in FUNCTIONS:
            close = difflib.get_close_matches(name, FUNCTIONS, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise self.fail(node, f"unknown function {name!r}", f"{hint}functions: {', '.join(sorted(FUNCTIONS))}")
        if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
            raise self.fail(node, f"{name}() takes plain arguments only")
        target, arity = FUNCTIONS[name]
        count = len(node.args)
        if (arity is None and count < 2) or (arity is not None and count != arity):
            wanted = "at least 2" if arity is None else str(arity)
            raise self.fail(node, f"{name}() takes {wanted} argument(s), got {count}")
        if target == "where":
            test, yes, no = node.args
            return f"where({self.boolean(test)}, {self.number(yes)}, {self.number(no)})", "number"
        args = [self.number(arg) for arg in node.args]
        if target == "pow":
            return f"({args[0]} ** {args[1]})", "number"
        if target == "fract":
            return f"({args[0]} - floor({args[0]}))", "number"
        if target == "clip":
            return f"minimum(maximum({args[0]}, {args[1]}), {args[2]})", "number"
        if arity is None:  # n-ary min/max fold into nested binary calls
            code = args[0]
            for arg in args[1:]:
                code = f"{target}({code}, {arg})"
            return code, "number"
        return f"{target}({', '.join(args)})", "number"


def _has_variables(node: ast.AST) -> bool:
    functions = {id(n.func) for n in ast.walk(node) if isinstance(n, ast.Call)}
    return any(isinstance(n, ast.Name) and n.id not in CONSTANTS and id(n) not in functions for n in ast.walk(node))


def _scalar_value(code: str) -> float:
    with np.errstate(all="ignore"):
        return float(eval(_scalar_code(code), _SCALAR_NAMESPACE, {}))  # allow-listed AST only


def _literal(value: float) -> str:
    if value == 0:  # unsigned: numexpr keeps one constant per value, so a -0.0 beside a 0.0 became both
        return "0.0"
    if np.isnan(value):
        return "_nan"
    if np.isinf(value):
        return "_inf" if value > 0 else "(-_inf)"
    return repr(value) if value >= 0 else f"({value!r})"


_ALLOWED_HINT = "use numbers, + - * / ** % //, comparisons, and/or/not, x if c else y, and functions like sin(t)"


def _describe(node: ast.AST) -> str:
    names = {
        ast.Attribute: "attribute access (a.b)",
        ast.Subscript: "indexing (a[b])",
        ast.Lambda: "lambda",
        ast.Tuple: "a tuple (a, b)",
        ast.List: "a list",
        ast.Dict: "a dict",
        ast.Set: "a set",
        ast.JoinedStr: "an f-string",
        ast.NamedExpr: "assignment (:=)",
        ast.MatMult: "@",
        ast.LShift: "<<",
        ast.RShift: ">>",
        ast.BitXor: "^ (use ** for powers)",
        ast.Is: "is",
        ast.IsNot: "is not",
        ast.In: "in",
        ast.NotIn: "not in",
    }
    return names.get(type(node), type(node).__name__)
