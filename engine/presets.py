"""TOML presets: load (with ``--set`` overrides), validate, and save with comments preserved.

A preset holds only what differs from the defaults, grouped in tables (``[motion]``...);
a field may also be written at the top level by its bare name. Loading returns the
validated :class:`Settings` plus the tomlkit document, so saving an edited preset keeps
the user's comments and layout and rewrites only the values that changed.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions
from pydantic import ValidationError

from engine.errors import DriftwaveError, ErrorGroup, SettingsError, collecting_notices
from engine.settings import FIELDS, GROUPS, Settings, literal_choices

TOP_LEVEL = set(Settings.model_fields)


@dataclass
class Preset:
    """A loaded preset: its settings, the document it came from, and what was noticed."""

    settings: Settings
    path: Path | None = None
    document: tomlkit.TOMLDocument | None = None
    notices: list[str] = field(default_factory=list)


def load_preset(path: str | Path, overrides: Iterable[str] = ()) -> Preset:
    """Read, override and validate a preset file. Raises SettingsError (or ErrorGroup)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"preset {str(path)!r} does not exist", hint=_presets_hint()) from None
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError(f"cannot read preset {str(path)!r}: {error}") from None
    document = parse_toml(text, name=str(path))
    with collecting_notices() as notices:
        settings = settings_from_data(document.unwrap(), overrides=overrides, base_dir=path.parent)
    return Preset(settings, path, document, notices)


def parse_toml(text: str, *, name: str = "preset") -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as error:
        lines = text.splitlines() or [""]
        offset = sum(len(line) + 1 for line in lines[: max(error.line - 1, 0)]) + max(error.col - 1, 0)
        raise SettingsError(
            f"{name} is not valid TOML ({str(error).split(' at line')[0].lower()})",
            source=text,
            offset=min(offset, len(text)),
            hint='values look like  max_frames = 120  or  zoom = "0:(1.02)"',
        ) from None
    except tomlkit.exceptions.TOMLKitError as error:  # e.g. a key written twice
        raise SettingsError(f"{name} is not valid TOML: {error}", hint="write each key once per table") from None


def settings_from_data(
    data: dict[str, Any], *, overrides: Iterable[str] = (), base_dir: Path | None = None
) -> Settings:
    """Validate plain data (from TOML, JSON or the TUI) into Settings; errors name each field."""
    data = nest_flat_keys(data)
    for assignment in overrides:
        apply_override(data, assignment)
    if base_dir is not None:
        resolve_paths(data, base_dir)
    try:
        return Settings.model_validate(data)
    except ValidationError as error:
        problems = [_settings_error(detail) for detail in error.errors()]
        raise (problems[0] if len(problems) == 1 else ErrorGroup(problems)) from None


def nest_flat_keys(data: dict[str, Any]) -> dict[str, Any]:
    """Move fields written at the top level by bare name (``zoom = ...``) into their group."""
    nested: dict[str, Any] = {}
    for key, value in data.items():
        if key in TOP_LEVEL:
            if isinstance(value, dict) and isinstance(nested.get(key), dict):
                value = {**nested[key], **value}
            nested[key] = value
        elif key in FIELDS:
            group, name = FIELDS[key]
            table = nested.setdefault(group, {})
            if isinstance(table, dict):
                table[name] = value
        else:
            nested[key] = value  # unknown: validation names it
    return nested


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``key=value`` (``zoom=0:(1.02)``, ``image.W=640``, ``prompts.30=a cat``)."""
    key, separator, text = assignment.partition("=")
    key = key.strip()
    if not separator or not key:
        raise SettingsError(f"--set {assignment!r} has no '='", hint="write --set key=value, e.g. --set max_frames=60")
    group, name = resolve_key(key)
    if group == "prompts":
        prompts = data.setdefault("prompts", {})
        if not isinstance(prompts, dict):
            prompts = data["prompts"] = {}
        prompts[name] = text
        return
    table = data.setdefault(group, {})
    if not isinstance(table, dict):
        table = data[group] = {}
    table[name] = override_value(GROUPS[group].model_fields[name].annotation, text)


def resolve_key(key: str) -> tuple[str, str]:
    """``zoom`` or ``motion.zoom`` -> (``motion``, ``zoom``); ``prompts.30`` -> (``prompts``, ``30``)."""
    parts = key.split(".", 1)
    if len(parts) == 2 and parts[0] == "prompts":
        return "prompts", parts[1].strip()
    if len(parts) == 2 and parts[0] in GROUPS:
        group, name = parts
        if name in GROUPS[group].model_fields:
            return group, name
        raise SettingsError(f"unknown setting {key!r}", field=key, hint=_unknown_hint(name, group))
    if len(parts) == 1 and key in FIELDS:
        return FIELDS[key]
    raise SettingsError(f"unknown setting {key!r}", field=key, hint=_unknown_hint(parts[-1], None))


def override_value(annotation: Any, text: str) -> Any:
    """Text from the command line as the field's type: strings stay raw, the rest is TOML."""
    if annotation is str or typing.get_origin(annotation) is typing.Annotated:
        return text
    try:
        return tomlkit.parse(f"value = {text}").unwrap()["value"]
    except (tomlkit.exceptions.TOMLKitError, ValueError):
        return text  # validation explains what was expected


def resolve_paths(data: dict[str, Any], base_dir: Path) -> None:
    """Make relative paths that exist beside the preset absolute."""
    for group, model in GROUPS.items():
        table = data.get(group)
        if not isinstance(table, dict):
            continue
        for name, info in model.model_fields.items():
            value = table.get(name)
            if _kind(info) == "path" and isinstance(value, str) and value and not Path(value).is_absolute():
                candidate = base_dir / value
                if candidate.exists():
                    table[name] = str(candidate.resolve())


def _kind(info: Any) -> str | None:
    extra = info.json_schema_extra
    return extra.get("kind") if isinstance(extra, dict) else None


# -- saving ---------------------------------------------------------------------------------


def to_document(
    settings: Settings,
    *,
    base: tomlkit.TOMLDocument | None = None,
    original: Settings | None = None,
    full: bool = False,
    include: set[str] | frozenset[str] = frozenset(),
    header: str | None = None,
    comments: dict[str, str] | None = None,
) -> tomlkit.TOMLDocument:
    """The TOML of ``settings``.

    With ``base`` (a loaded document) and ``original`` (the settings it gave), only values
    that differ from ``original`` are rewritten and everything else, comments included, stays.
    Otherwise a new document holds every value (``full``), or those unlike the defaults plus
    the ``include`` paths (``"motion.zoom"``); ``comments`` go after those paths' values.
    """
    new = settings.model_dump(mode="json")
    if base is not None:
        document = tomlkit.parse(tomlkit.dumps(base))  # a copy: never edit the caller's document
        reference = (original or Settings()).model_dump(mode="json")
        _write_changes(document, new, reference)
        return document
    document = tomlkit.document()
    if header:
        for line in header.splitlines():
            document.add(tomlkit.comment(line))
        document.add(tomlkit.nl())
    reference = Settings().model_dump(mode="json")
    for group, values in new.items():
        if group == "prompts":
            document.add("prompts", _table(values, comment="prompts by frame; --neg starts the negative part"))
            continue
        if isinstance(values, list):  # [[controlnet]]: every unit whole
            if values:
                document.add(group, _tables(values))
            continue
        changed = {k: v for k, v in values.items() if full or v != reference[group][k] or f"{group}.{k}" in include}
        if changed:
            table = _table(changed, comment=_group_comment(group))
            for name in changed:
                if f"{group}.{name}" in (comments or {}):
                    table[name].comment(comments[f"{group}.{name}"])
            document.add(group, table)
    return document


def save_preset(settings: Settings, path: str | Path, **options: Any) -> None:
    """Write ``to_document(settings, **options)`` to ``path`` atomically."""
    path = Path(path)
    text = tomlkit.dumps(to_document(settings, **options))
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise SettingsError(f"cannot write {str(path)!r}: {error}", hint="choose a folder you can write to") from None


def _write_changes(document: tomlkit.TOMLDocument, new: dict[str, Any], old: dict[str, Any]) -> None:
    for group, values in new.items():
        if isinstance(values, list):  # [[controlnet]]: rewritten whole when it changed
            if values != old.get(group):
                if group in document:
                    del document[group]
                if values:
                    document.add(group, _tables(values))
            continue
        if group == "prompts":
            if values != old.get("prompts"):
                table = document.get("prompts")
                if table is None:
                    document.add("prompts", _table(values))
                    continue
                for key in [k for k in table if k not in values]:
                    del table[key]
                for key, text in values.items():
                    if table.get(key) != text:
                        table[key] = _item(text)
            continue
        for name, value in values.items():
            if value == old[group][name]:
                continue
            if name in document and group not in document:
                document[name] = _item(value)  # the user wrote it at the top level: keep it there
                continue
            if group not in document:
                document.add(group, tomlkit.table())
            document[group][name] = _item(value)


def _tables(entries: list[dict[str, Any]]) -> Any:
    """An array of tables (``[[controlnet]]``)."""
    array = tomlkit.aot()
    for entry in entries:
        array.append(_table(entry))
    return array


def _table(values: dict[str, Any], comment: str | None = None) -> Any:
    table = tomlkit.table()
    if comment:
        table.add(tomlkit.comment(comment))
    for key, value in values.items():
        table.add(key, _item(value))
    return table


def _item(value: Any) -> Any:
    if isinstance(value, str):
        if "\n" in value:
            return tomlkit.string(value, multiline=True)
        if '"' in value and "'" not in value:
            return tomlkit.string(value, literal=True)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        array = tomlkit.aot()
        for entry in value:
            array.append(_table(entry))
        return array
    return tomlkit.item(value)


def _group_comment(group: str) -> str | None:
    doc = GROUPS[group].__doc__
    return doc.strip().splitlines()[0] if doc else None


# -- messages -------------------------------------------------------------------------------


def _settings_error(detail: dict[str, Any]) -> DriftwaveError:
    location = [str(part) for part in detail["loc"]]
    path = ".".join(location)
    if detail["type"] == "extra_forbidden":
        group = location[0] if len(location) > 1 else None
        what = f"unknown setting {location[-1]!r}" + (f" in [{group}]" if group in GROUPS else "")
        if len(location) == 1 and isinstance(detail.get("input"), dict):
            what = f"unknown section [{location[0]}]"
        return SettingsError(what, field=path, hint=_unknown_hint(location[-1], group if group in GROUPS else None))
    message = detail["msg"].removeprefix("Value error, ")
    value = detail.get("input")
    shown = f" (got {value!r})" if value is not None and not isinstance(value, dict | list) else ""
    return SettingsError(f"{message}{shown}", field=path, hint=_expected(location))


def _expected(location: list[str]) -> str | None:
    if len(location) < 2 or location[0] not in GROUPS:
        return None
    info = GROUPS[location[0]].model_fields.get(location[1])
    if info is None:
        return None
    annotation = info.annotation
    choices = literal_choices(annotation)
    if choices:
        wanted = "one of " + ", ".join(repr(c) for c in choices)
    else:
        wanted = {int: "a whole number", float: "a number", bool: "true or false", str: "text in quotes"}.get(
            annotation, "a value"
        )
        if _kind(info) == "schedule":
            wanted = 'a number or a schedule like "0:(1.0), 30:(1.05)"'
    description = f" ({info.description})" if info.description else ""
    return f"{location[1]} takes {wanted}{description}"


def _unknown_hint(name: str, group: str | None) -> str:
    if name in FIELDS and group is not None and FIELDS[name][0] != group:
        return f"{name} belongs in [{FIELDS[name][0]}]"
    if group is None and name in GROUPS:
        return f"[{name}] is a section: write {name}.<setting>"
    candidates = list(GROUPS[group].model_fields) if group in GROUPS else [*FIELDS, *TOP_LEVEL]
    close = difflib.get_close_matches(name, candidates, n=3)
    if close:
        return "did you mean " + " or ".join(close) + "?"
    where = f"[{group}] holds: {', '.join(GROUPS[group].model_fields)}" if group in GROUPS else ""
    return where or "run `main.py settings` to list every setting"


def _presets_hint() -> str:
    folder = Path(__file__).resolve().parent.parent / "presets"
    names = sorted(p.name for p in folder.glob("*.toml"))
    return f"presets in {folder}: {', '.join(names)}" if names else "give the path of a .toml preset"
