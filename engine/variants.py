"""The variants of a sweep or a queue: ``--vary KEY=V1,V2`` lists (ranges ``1..16``, ``0.4..0.7:0.1``),
their cross product or pairs (``--zip``), each a name, its parameters and validated settings.

Every variant's settings are built and validated before any render starts, so a bad key or value
stops the batch naming that key and value.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from engine.errors import DriftwaveError, ErrorGroup, SettingsError
from engine.presets import load_preset, resolve_key, settings_from_data
from engine.settings import Settings

MAX_VARIANTS = 10_000
_RANGE = re.compile(r"^\s*(-?[\d.]+)\s*\.\.\s*(-?[\d.]+)\s*(?::\s*([\d.]+))?\s*$")


Check = Callable[[Settings], object]


def _no_check(settings: Settings) -> None:
    return None


@dataclass(frozen=True)
class Vary:
    """One ``--vary``: a setting and the values it takes, as the text ``--set`` would get."""

    key: str
    values: tuple[str, ...]


@dataclass
class Variant:
    """One render of a batch: its folder name, what it varies, its settings (not yet placed)."""

    name: str
    params: dict[str, str]
    settings: Settings


Loader = Callable[[list[str]], Settings]
"""Settings with ``--set``-style assignments applied (a preset file, or the TUI's settings)."""


def preset_loader(path: Path) -> Loader:
    return lambda assignments: load_preset(path, assignments).settings


def data_loader(data: dict[str, Any]) -> Loader:
    """Settings as plain data (a snapshot sent by the TUI), copied for each variant."""
    return lambda assignments: settings_from_data(copy.deepcopy(data), overrides=assignments)


def parse_vary(text: str) -> Vary:
    """``KEY=V1,V2`` (``|`` separates values that hold commas, such as schedules), ``KEY=A..B``
    or ``KEY=A..B:STEP`` (inclusive)."""
    key, separator, values = text.partition("=")
    key = key.strip()
    if not separator or not key or not values.strip():
        raise SettingsError(
            f"--vary {text!r} needs a key and values",
            hint="write --vary KEY=V1,V2 (e.g. --vary seed=1..16 or --vary strength_schedule='0:(0.5)|0:(0.7)')",
        )
    resolve_key(key)  # an unknown key is said before anything else
    ranged = _RANGE.match(values)
    if ranged:
        listed = _expand_range(key, *ranged.groups())
    else:
        listed = [value.strip() for value in values.split("|" if "|" in values else ",")]
    if any(not value for value in listed):
        raise SettingsError(f"--vary {text!r} has an empty value", field=key, hint="remove the doubled separator")
    return Vary(key, tuple(listed))


def _expand_range(key: str, start: str, stop: str, step: str | None) -> list[str]:
    try:
        first, last, stride = Decimal(start), Decimal(stop), Decimal(step or "1")
    except InvalidOperation:
        raise SettingsError(
            f"--vary {key}={start}..{stop} is not a range of numbers", field=key, hint="e.g. seed=1..16"
        ) from None
    if stride <= 0 or last < first:
        raise SettingsError(
            f"--vary {key}={start}..{stop}{':' + step if step else ''} is empty",
            field=key,
            hint="write a range from low to high with a positive step, e.g. 0.4..0.7:0.1",
        )
    count = int((last - first) / stride) + 1
    if count > MAX_VARIANTS:
        raise SettingsError(f"--vary {key} makes {count} values", field=key, hint=f"at most {MAX_VARIANTS}")
    return [str(first + stride * index) for index in range(count)]


def combine(varies: Sequence[Vary], *, paired: bool) -> list[dict[str, str]]:
    """The variants' parameters: every combination, or (``paired``) the i-th value of each list.
    The same key given twice gets the values of both."""
    merged: dict[str, list[str]] = {}
    for vary in varies:
        merged.setdefault(vary.key, []).extend(vary.values)
    keys = list(merged)
    if paired:
        lengths = {key: len(values) for key, values in merged.items()}
        if len(set(lengths.values())) > 1:
            said = ", ".join(f"{key} has {count}" for key, count in lengths.items())
            raise SettingsError(f"--zip pairs lists of one length: {said}", hint="give each --vary as many values")
        rows = list(zip(*merged.values(), strict=True))
    else:
        rows = list(itertools.product(*merged.values()))
    if len(rows) > MAX_VARIANTS:
        raise SettingsError(f"the sweep has {len(rows)} variants", hint=f"at most {MAX_VARIANTS}: vary fewer values")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def sweep_variants(
    load: Loader,
    overrides: Sequence[str],
    varies: Sequence[Vary],
    *,
    paired: bool,
    check: Check = _no_check,
    source: str = "preset",
) -> list[Variant]:
    """The sweep's variants with validated settings (``check`` raises what else is wrong with a
    variant's settings, e.g. a schedule that does not compile); ``source`` names the base in
    errors."""
    shared = list(overrides)
    _validated(load, shared, source, check)
    _check_each_value(load, shared, varies, check)
    rows = combine(varies, paired=paired)
    width = len(str(len(rows) - 1))
    variants = []
    for index, params in enumerate(rows):
        assignments = [*shared, *(f"{key}={value}" for key, value in params.items())]
        settings = _validated(load, assignments, f"variant {_label(params)}", check)
        variants.append(Variant(variant_name(index, width, params), params, settings))
    return variants


def queue_variants(presets: Sequence[Path], overrides: Sequence[str], *, check: Check = _no_check) -> list[Variant]:
    """One variant per preset, in order, each with its own validated settings."""
    width = len(str(len(presets) - 1))
    errors, variants = [], []
    for index, preset in enumerate(presets):
        try:
            settings = _validated(preset_loader(preset), list(overrides), f"preset {preset}", check)
        except DriftwaveError as error:
            errors.append(error)
            continue
        variants.append(Variant(f"{index:0{width}d}_{_safe(preset.stem)}", {"preset": str(preset)}, settings))
    if errors:
        raise errors[0] if len(errors) == 1 else ErrorGroup(errors)
    return variants


def variant_name(index: int, width: int, params: dict[str, str]) -> str:
    """``03_seed-3_strength_schedule-0_0.6``: the index keeps names unique and in order."""
    parts = [f"{key.rsplit('.', 1)[-1]}-{_safe(value)}" for key, value in params.items()]
    return f"{index:0{width}d}_{'_'.join(parts)}"[:100].rstrip("_-")


def _check_each_value(load: Loader, shared: list[str], varies: Sequence[Vary], check: Check) -> None:
    """Each value on its own against the preset, so an error names the one key and value."""
    errors = []
    for vary in varies:
        for value in vary.values:
            try:
                _validated(load, [*shared, f"{vary.key}={value}"], f"--vary {vary.key}={value}", check)
            except DriftwaveError as error:
                errors.append(error)
    if errors:
        raise errors[0] if len(errors) == 1 else ErrorGroup(errors)


def _validated(load: Loader, assignments: list[str], where: str, check: Check) -> Settings:
    try:
        settings = load(assignments)
        check(settings)
        return settings
    except DriftwaveError as error:
        raise _in(error, where) from None


def _in(error: DriftwaveError, where: str) -> DriftwaveError:
    if isinstance(error, ErrorGroup):
        return ErrorGroup([_in(each, where) for each in error.errors])
    located = copy.copy(error)
    located.message = f"{where}: {error.message}"
    located.args = (located.message,)
    return located


def _label(params: dict[str, str]) -> str:
    return ", ".join(f"{key}={value}" for key, value in params.items())


def _safe(text: str) -> str:
    return re.sub(r"[^\w.\-]+", "_", text).strip("_") or "_"
