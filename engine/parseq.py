"""Parseq documents (rewbs/sd-parseq), applied as Deforum's ``parseq_adapter.py`` applies them.

Deforum reads only ``rendered_frames`` (one dict of values per frame) and ``options``
(``output_fps``, ``cadence``). A field is Parseq's when frame 0 has its key; the rest keep the
settings file's schedules. With ``parseq_use_deltas`` (Deforum's default) the eleven motion
fields take Parseq's ``*_delta`` values: Deforum's motion schedules are per-frame increments,
Parseq's plain values positions. ``parseq_non_schedule_overrides`` sets the frame count, fps
and cadence. Per-frame values become keyframe schedules (hold blend, exact at every frame);
``deforum_prompt`` becomes keyed prompts; ``seed`` a seed schedule with subseeds; ``cn_N_weight``,
``cn_N_guidance_start`` and ``cn_N_guidance_end`` the schedules of the unit imported from cn_N.
"""

from __future__ import annotations

import json
import math
import re
import urllib.request
from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.errors import SettingsError
from engine.settings import fields_of_kind

DELTA_FIELDS = (
    "angle",
    "zoom",
    "translation_x",
    "translation_y",
    "translation_z",
    "rotation_3d_x",
    "rotation_3d_y",
    "rotation_3d_z",
    "perspective_flip_theta",
    "perspective_flip_phi",
    "perspective_flip_gamma",
)
# Deforum schedule -> Parseq key, where the key is not the schedule's name less "_schedule"
EXPLICIT = {
    "noise_schedule": "noise",
    "strength_schedule": "strength",
    "contrast_schedule": "contrast",
    "cfg_scale_schedule": "scale",
    "fov_schedule": "fov",
    "near_schedule": "near",
    "far_schedule": "far",
    "subseed_schedule": "subseed",
    "subseed_strength_schedule": "subseed_strength",
    "kernel_schedule": "antiblur_kernel",
    "sigma_schedule": "antiblur_sigma",
    "amount_schedule": "antiblur_amount",
    "threshold_schedule": "antiblur_threshold",
    "clipskip_schedule": "clipskip",
}
CONTROLNET_SCHEDULES = ("weight", "guidance_start", "guidance_end")  # Deforum's ControlNetKeys
_CONTROLNET_KEY = re.compile(rf"cn_(\d+)_(?:{'|'.join(CONTROLNET_SCHEDULES)})")
SOURCE = "rewbs/sd-parseq document, applied as deforum-art/sd-webui-deforum parseq_adapter.py does"


def is_parseq_document(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("rendered_frames"), list)


def load_manifest(text: str, *, field: str = "parseq_manifest") -> dict[str, Any]:
    """An inline Parseq document, or one fetched from its URL where the network allows."""
    text = text.strip()
    if text.startswith("http"):
        try:
            with urllib.request.urlopen(text, timeout=10) as response:
                text = response.read().decode("utf-8")
        except (OSError, ValueError) as error:
            raise SettingsError(
                f"the Parseq manifest {text} cannot be fetched here ({error})",
                field=field,
                hint="download the document from Parseq and import it: main.py import doc.json "
                "(or paste its JSON into parseq_manifest)",
            ) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise SettingsError(
            f"parseq_manifest is not a Parseq document (invalid JSON: {error.msg})", field=field
        ) from None
    if not is_parseq_document(document) or not document["rendered_frames"]:
        raise SettingsError(
            "the Parseq document has no rendered_frames", field=field, hint="export it again from Parseq"
        )
    return document


def frame_count(document: dict[str, Any]) -> int:
    return len(document["rendered_frames"])


def series(document: dict[str, Any], key: str, frames: int) -> list[float]:
    """Deforum's ``parseq_to_series``: values by frame number, later duplicates winning, frames
    past the end dropped, the last entry's value held to the end; a gap holds the value before."""
    rendered = document["rendered_frames"]
    values: list[Any] = [None] * frames
    for entry in rendered:
        if 0 <= int(entry["frame"]) < frames:
            values[int(entry["frame"])] = entry[key]
    for index in range(int(rendered[-1]["frame"]), frames):
        if index >= 0:
            values[index] = rendered[-1][key]
    held: list[Any] = []
    for value in values:
        held.append(held[-1] if value is None and held else value)
    return held


def parseq_key(schedule: str, use_deltas: bool) -> str:
    """The Parseq key Deforum reads for one of its schedule names."""
    if schedule in DELTA_FIELDS:
        return f"{schedule}_delta" if use_deltas else schedule
    if schedule in EXPLICIT:
        return EXPLICIT[schedule]
    name = schedule
    while name.endswith(("_schedule", "_series")):
        name = name.removesuffix("_schedule").removesuffix("_series")
    return name


def schedule_text(values: list[float]) -> str:
    """Per-frame numbers as hold-blend keyframes that give each frame's value: a keyframe wherever
    the curve bends (a run on one straight line keeps only its ends, the hold blend interpolates it)."""
    keep = [0]
    for index in range(1, len(values) - 1):
        bend = values[index - 1] - 2 * values[index] + values[index + 1]
        scale = max(abs(values[index - 1]), abs(values[index]), abs(values[index + 1]), 1.0)
        if abs(bend) > 1e-12 * scale:
            keep.append(index)
    if len(values) > 1:
        keep.append(len(values) - 1)
    return ", ".join(f"{index}:({_number(values[index])})" for index in keep)


def _number(value: float) -> str:
    """Shortest exact decimal, never an exponent (Deforum's hold blend reads 1e-05 as an expression)."""
    return np.format_float_positional(float(value), unique=True, trim="-")


def prompt_table(document: dict[str, Any], frames: int) -> dict[str, str]:
    """``deforum_prompt`` per frame -> keyed prompts, one key where the text changes."""
    prompts: dict[str, str] = {}
    previous = None
    for frame, text in enumerate(series(document, "deforum_prompt", frames)):
        if text != previous:
            prompts[str(frame)] = str(text or "")
            previous = text
    return prompts


def apply_parseq(
    imported: dict[str, Any],
    data: dict[str, Any],
    document: dict[str, Any],
    default_frames: int,
    unit_numbers: Sequence[int] = (),
) -> list[str]:
    """Put the document's per-frame values into the importer's ``imported`` (Driftwave field names);
    ``unit_numbers``: the Deforum number (cn_N) of each of ``imported["controlnet"]``'s units.
    Returns what was done, for the import's warnings."""
    use_deltas = bool(data.get("parseq_use_deltas", True))
    rendered, options = document["rendered_frames"], document.get("options") or {}
    frames = int(imported.get("max_frames", default_frames))
    if data.get("parseq_non_schedule_overrides", True):
        frames = imported["max_frames"] = frame_count(document)
        if options.get("output_fps"):
            imported["fps"] = float(options["output_fps"])
        if options.get("cadence"):
            imported["diffusion_cadence"] = int(options["cadence"])
    first = rendered[0]
    managed = []
    for group, name in fields_of_kind("schedule"):
        key = parseq_key("cfg_scale_schedule" if name == "scale" else name, use_deltas)
        if key in first:
            numbers = [float(value) for value in series(document, key, frames)]
            if name == "seed_schedule":
                numbers = [float(math.trunc(value)) for value in numbers]  # Deforum's int()
            imported[name] = schedule_text(numbers)
            managed.append(f"{group}.{name}" + (f" ({key})" if key != name else ""))
    managed += _controlnet_schedules(imported.get("controlnet", []), unit_numbers, document, frames)
    if "seed" in first:  # Deforum seeds every frame from it, with Parseq's subseeds
        imported["seed_behavior"] = "schedule"
        imported["enable_subseed_scheduling"] = True
    if "deforum_prompt" in first:
        imported["prompts"] = prompt_table(document, frames)
        imported.pop("scene_prefix", None)  # Deforum leaves its own prompt additions out too
        imported.pop("negative_prompt", None)
        managed.append("prompts (deforum_prompt)")
    imported["enable_perspective_flip"] = True  # Deforum always turns it on with Parseq
    meta = document.get("meta") or {}
    made_by = " ".join(str(meta[key]) for key in ("generated_by", "version") if meta.get(key)) or "Parseq"
    said = [
        f"Parseq ({made_by}, {len(rendered)} rendered frames) sets {len(managed)} fields per frame"
        f"{' with deltas for motion' if use_deltas else ''}: {', '.join(managed)}"
    ]
    unused = sorted(key for key in first if (cn := _CONTROLNET_KEY.fullmatch(key)) and int(cn[1]) not in unit_numbers)
    if unused:
        said.append(f"Parseq's {', '.join(unused)}: those ControlNet units are not enabled in the settings; unused")
    return said


def _controlnet_schedules(
    units: list[dict[str, Any]], unit_numbers: list[int], document: dict[str, Any], frames: int
) -> list[str]:
    """Parseq's ``cn_N_weight``, ``cn_N_guidance_start`` and ``cn_N_guidance_end`` into the units
    imported from cn_N, as Deforum's ``ParseqControlNetKeysDecorator`` reads them."""
    first, managed = document["rendered_frames"][0], []
    for position, (unit, number) in enumerate(zip(units, unit_numbers, strict=True), start=1):
        for name in CONTROLNET_SCHEDULES:
            if (key := f"cn_{number}_{name}") in first:
                unit[name] = schedule_text([float(value) for value in series(document, key, frames)])
                managed.append(f"controlnet.{position}.{name} ({key})")
    return managed
