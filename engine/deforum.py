"""Import Deforum settings files: the A1111 extension's JSON and the notebook's ``*_settings.txt``.

Every key is mapped onto a Driftwave setting or named in a warning. Schedules keep their
text and the preset gets ``blend = "hold"``, so they render the curves Deforum rendered;
Deforum's ``s`` (the seed) becomes ``seed``. Prompts switch at their keys (no cross-fade),
as Deforum's 2D/3D modes do.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.controlnet import NOT_CONTROLNETS
from engine.errors import DriftwaveError, ErrorGroup, ScheduleError, SettingsError
from engine.parseq import apply_parseq, is_parseq_document, load_manifest
from engine.presets import settings_from_data
from engine.samplers import APPROXIMATIONS, canonical_sampler, sampler_key
from engine.schedule import split_top_level
from engine.settings import (
    FIELDS,
    NCNN_UPSCALE_MODELS,
    AnimationSettings,
    ControlNetUnit,
    Settings,
    fields_of_kind,
    fields_without_effect,
    literal_choices,
)

# Deforum's name -> Driftwave's field name, where they differ
RENAMED = {
    "flip_2d_perspective": "enable_perspective_flip",
    "enable_schedule_samplers": "enable_sampler_scheduling",
    "cfg_scale_schedule": "scale",
    "fov": "fov_schedule",
    "near_plane": "near_schedule",
    "far_plane": "far_schedule",
    "skip_video_for_run_all": "skip_video_creation",
    "create_gif": "make_gif",
    "ffmpeg_fps": "fps",
    "frames_per_second": "fps",
    "ffmpeg_maxframes": "max_video_frames",
    "depth_algorithm": "depth_model",
}
# schedules Deforum only applies when their enable_* switch is on
SWITCHED = {
    "ddim_eta_schedule": ("enable_ddim_eta_scheduling", "ddim_eta"),
    "ancestral_eta_schedule": ("enable_ancestral_eta_scheduling", "ancestral_eta"),
    "clipskip_schedule": ("enable_clipskip_scheduling", "clip_skip"),
    "noise_multiplier_schedule": ("enable_noise_multiplier_scheduling", "noise_multiplier"),
}
# read by the prompt/soundtrack/switch handling below, not one to one
HANDLED = {
    "prompts",
    "animation_prompts",
    "cond_prompts",
    "uncond_prompts",
    "animation_prompts_positive",
    "animation_prompts_negative",
    "positive_prompts",
    "negative_prompts",
    "add_soundtrack",
    "soundtrack_path",
    "parseq_manifest",
    "parseq_use_deltas",
    "parseq_non_schedule_overrides",
    "sd_model_name",
    "use_zoe_depth",
    *(switch for switch, _ in SWITCHED.values()),
}
# Deforum's run state and bookkeeping, or behaviour that is always on here
NO_EFFECT = {
    "C",
    "f",
    "precision",
    "timestring",
    "seed_internal",
    "init_latent",
    "init_sample",
    "init_sample_raw",
    "mask_sample",
    "init_c",
    "prompt",
    "cond_prompt",
    "uncond_prompt",
    "show_info_on_ui",
    "sd_model_hash",
    "deforum_git_commit_id",
    "outdir",
    "image_path",
    "mp4_path",
    "ffmpeg_location",
    "ffmpeg_outdir",
    "ffmpeg_timestring",
    "ffmpeg_image_path",
    "ffmpeg_mp4_path",
    "ffmpeg_gif_path",
    "ffmpeg_extension",
    "ffmpeg_mode",
    "display_ffmpeg",
    "debug",
    "prompt_weighting",
    "normalize_prompt_weights",
    "log_weighted_subprompts",
    "override_settings_with_file",
    "custom_settings_file",
    "settings_file",
    "models_path",
    "output_path",
    "motion_preview_mode",
}
# unsupported keys whose value says a feature was in use
_FEATURE_SWITCHES = {
    "hybrid_generate_human_masks",
    "use_looper",
    "restore_faces",
}
CLIP_NAMES = {
    "vit-l/14": "openai/clip-vit-large-patch14",
    "vit-l/14@336px": "openai/clip-vit-large-patch14-336",
    "vit-b/16": "openai/clip-vit-base-patch16",
    "vit-b/32": "openai/clip-vit-base-patch32",
}
_FLOW_FIELDS = ("hybrid.hybrid_flow_method", "coherence.optical_flow_cadence", "coherence.optical_flow_redo_generation")
_FLOW_METHODS = {  # field name -> the flow methods it takes
    name: literal_choices(Settings.model_fields[group].annotation.model_fields[name].annotation)
    for group, name in (path.split(".") for path in _FLOW_FIELDS)
}
_SCHEDULES = {name for _, name in fields_of_kind("schedule")}
_PATH_FIELDS = {name for _, name in fields_of_kind("path")}
_WITHOUT_EFFECT = fields_without_effect()
_CONTROLNET_KEY = re.compile(r"cn_(\d+)_")
_SEED_NAME = re.compile(r"(?<![\w.])s(?![\w(])")


@dataclass
class DeforumImport:
    settings: Settings
    kind: str  # "A1111 extension", "notebook" or "partial"
    mapped: set[str] = field(default_factory=set)  # "group.name" of every field the file set
    warnings: list[str] = field(default_factory=list)
    keys: int = 0  # how many of the file's keys are Deforum's
    provenance: list[str] = field(default_factory=list)  # for the preset's header: where values came from
    comments: dict[str, str] = field(default_factory=dict)  # "group.field" -> why it holds what it holds


def import_deforum(path: str | Path) -> DeforumImport:
    """Read a Deforum settings file into Settings (raises SettingsError when it is not one)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SettingsError(
            f"{str(path)!r} does not exist", hint="give the path of a Deforum settings .txt/.json"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError(f"cannot read {str(path)!r}: {error}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise SettingsError(
            f"{path.name} is invalid JSON: {error.msg} at line {error.lineno}, column {error.colno}",
            source=text,
            offset=error.pos,
            hint=_json_hint(text, error),
        ) from None
    if is_parseq_document(data):
        return import_deforum_data({"parseq_manifest": data})
    if not isinstance(data, dict) or not any(is_deforum_key(key) for key in data):
        raise SettingsError(
            f"{path.name} does not look like Deforum settings: it has none of Deforum's keys",
            hint="give a Deforum settings file (a JSON object with keys such as animation_mode, W, prompts)",
        )
    return import_deforum_data(data)


def _json_hint(text: str, error: json.JSONDecodeError) -> str:
    """What to change in a file that is not JSON, from what stands there."""
    stripped = text.lstrip()
    if stripped.startswith("("):
        return "this looks like a Python tuple (copied from a log): keep only the {...} object"
    if "'" in text[max(error.pos - 40, 0) : error.pos + 1] and '"' not in text[max(error.pos - 2, 0) : error.pos + 1]:
        return "JSON needs double quotes around keys and text"
    if text[error.pos : error.pos + 2] in ("//", "/*") or text[error.pos : error.pos + 1] == "#":
        return "JSON has no comments: remove the annotation"
    return "fix the file at that place (Deforum writes its settings as JSON, <timestring>_settings.txt)"


def is_deforum_key(key: str) -> bool:
    """Whether ``key`` is one of Deforum's settings (mapped, handled, without effect or known unsupported)."""
    return (
        key in FIELDS
        or key in RENAMED
        or key in SWITCHED
        or key in HANDLED
        or key in NO_EFFECT
        or key in _FEATURE_SWITCHES
        or key.startswith(("cn_", "hybrid_", "parseq_", "frame_interpolation_", "r_upscale", "optical_flow"))
    )


def import_deforum_data(data: dict[str, Any]) -> DeforumImport:
    """Map Deforum's keys onto Settings; everything not mapped is named in a warning."""
    kind = _file_kind(data)
    keys = sum(1 for key in data if is_deforum_key(key))
    data = _upgrade(dict(data), kind)
    warnings: list[str] = []
    comments: dict[str, str] = {}  # "group.field" -> a comment for the preset
    imported, ignored, unsupported = _mapped_keys(data, warnings, comments)
    imported.update(_prompts(data, warnings))
    imported.update(_soundtrack(data))
    numbered_units = _controlnet_units(data, warnings)
    if numbered_units:
        imported["controlnet"] = [unit for _, unit in numbered_units]
    provenance: list[str] = []
    manifest = data.get("parseq_manifest")
    if isinstance(manifest, dict) or (isinstance(manifest, str) and manifest.strip()):
        document = manifest if isinstance(manifest, dict) else load_manifest(manifest)
        numbers = [number for number, _ in numbered_units]
        provenance = apply_parseq(imported, data, document, AnimationSettings().max_frames, numbers)
        warnings.extend(provenance)
        kind = "Parseq" if set(data) == {"parseq_manifest"} else f"{kind} + Parseq"
    imported["blend"] = "hold"
    imported["prompt_syntax"] = "a1111"  # Deforum hands its prompts to A1111
    imported.setdefault("prompt_blend_frames", 0)
    if data.get("sd_model_name"):
        warnings.append(f"the file used the model {data['sd_model_name']!r}: set model.model to its path or hub id")
    warnings.extend(_left_out(data, ignored, unsupported))
    warnings.extend(_missing_files(imported))
    settings = _validated(imported, warnings)
    mapped = {".".join(FIELDS[name]) for name in imported if name in FIELDS} | {"prompts"}
    return DeforumImport(settings, kind, mapped, warnings, keys, provenance, comments)


def _file_kind(data: dict[str, Any]) -> str:
    if not ({"animation_mode", "W", "prompts", "animation_prompts", "max_frames"} & data.keys()):
        return "partial"
    a1111 = {"deforum_git_commit_id", "cfg_scale_schedule", "sd_model_name"} & data.keys()
    return "A1111 extension" if a1111 else "notebook"


def _mapped_keys(
    data: dict[str, Any], warnings: list[str], comments: dict[str, str]
) -> tuple[dict[str, Any], list[str], list[str]]:
    """(Driftwave field name -> value, keys without effect here, keys not supported)."""
    imported: dict[str, Any] = {}
    ignored: list[str] = []
    unsupported: list[str] = []
    for key, value in data.items():
        target = RENAMED.get(key, key)
        if key in SWITCHED:
            switch, target = SWITCHED[key]
            if not data.get(switch, False):
                continue
        elif key in HANDLED or _CONTROLNET_KEY.match(key):
            continue
        elif key in NO_EFFECT:
            ignored.append(key)
            continue
        elif key.startswith("hybrid_video_") and key.replace("hybrid_video_", "hybrid_") in FIELDS:
            target = key.replace("hybrid_video_", "hybrid_")
        if target not in FIELDS or ".".join(FIELDS[target]) in _WITHOUT_EFFECT:
            unsupported.append(key)
            continue
        converted = _convert(target, value, warnings, comments)
        if converted is not None:
            imported[target] = converted
    return imported, ignored, unsupported


def _left_out(data: dict[str, Any], ignored: list[str], unsupported: list[str]) -> list[str]:
    """The warnings naming what the import leaves out: switched on first, then the rest."""
    warnings = []
    active = [key for key in unsupported if _is_on(key, data[key])]
    if active:
        warnings.append(f"switched on in the file but not supported here (rendered without): {_compact(active)}")
    shown_active = set(_compact(active).split(", "))
    rest = [key for key in unsupported if key not in active and _compact([key]) not in shown_active]
    if rest:
        warnings.append(f"not supported here, left out: {_compact(rest)}")
    if ignored:
        warnings.append(f"no effect here (Deforum run state, or always on): {_compact(ignored)}")
    return warnings


def _missing_files(imported: dict[str, Any]) -> list[str]:
    """One warning per referenced file that is not on this machine (the author's paths)."""
    warnings = []
    for name in sorted(imported):
        if name not in _PATH_FIELDS or not isinstance(imported[name], str):
            continue
        value = imported[name].strip()
        if not value or re.match(r"^[a-z]+://", value) or _hub_id(name, value) or Path(value).expanduser().exists():
            continue
        group = FIELDS[name][0]
        warnings.append(f"{group}.{name}: {value!r} does not exist on this machine; set it to your own file")
    return warnings


def _hub_id(name: str, value: str) -> bool:
    return name in ("model", "depth_model", "clip_name", "aesthetics_model") and "/" in value and ":" not in value


def _validated(imported: dict[str, Any], warnings: list[str]) -> Settings:
    """Validate; a value Driftwave cannot take falls back to the default, with a warning."""
    for _ in range(len(imported) + 1):
        try:
            return settings_from_data(imported)
        except DriftwaveError as error:
            problems = error.errors if isinstance(error, ErrorGroup) else [error]
            for problem in problems:
                name = (problem.field or "").split(".")[-1]
                if name not in imported:
                    raise
                warnings.append(f"{name} = {imported.pop(name)!r} cannot be used ({problem.message}); default kept")
    raise SettingsError("the imported settings could not be validated")


def _upgrade(data: dict[str, Any], kind: str) -> dict[str, Any]:
    """Deforum's own upgrades of old files (deprecation_utils), before mapping."""
    if kind == "A1111 extension" and "legacy_colormatch" not in data:
        data["legacy_colormatch"] = True  # Deforum loads old files this way
    if "use_zoe_depth" in data and "depth_algorithm" not in data:
        data["depth_algorithm"] = "Zoe" if str(data["use_zoe_depth"]) == "True" else "Midas"
    if "cfg_scale_schedule" in data:
        data.pop("scale", None)  # the A1111 schedule wins over the notebook number
    return data


def _convert(name: str, value: Any, warnings: list[str], comments: dict[str, str]) -> Any:
    """A Deforum value as the field ``name`` takes it; None keeps the default."""
    if value is None:
        return None
    if name == "sampler":
        return _sampler(value, warnings)
    if name == "sampler_schedule":
        return re.sub(
            r"\(\s*[\"']?([^\"')]*)[\"']?\s*\)", lambda m: f'("{_sampler(m.group(1), warnings)}")', str(value)
        )
    if name == "depth_model":
        return _depth_model(str(value), warnings)
    if name in _FLOW_METHODS and str(value) not in _FLOW_METHODS[name]:
        warnings.append(f"{name} {value!r} is not available; using DIS Medium")
        return "DIS Medium"
    if name == "frame_interpolation_engine" and str(value) not in ("None", "Flow", "RIFE v4.6"):
        warnings.append(f"frame_interpolation_engine {value!r} needs its model; interpolating along the optical flow")
        return "Flow"
    if name == "r_upscale_model" and value in NCNN_UPSCALE_MODELS:
        warnings.append(f"r_upscale_model {value!r} is realesrgan-ncnn's; upscaling with lanczos until it names a file")
        return "lanczos"
    if name == "clip_name":
        return CLIP_NAMES.get(str(value).lower(), value)
    if name == "grad_inject_timing" and value is None:
        return "none"
    if name == "batch_name":
        return re.sub(r"[_\- ]*\{timestring\}[_\- ]*", "", str(value)) or "deforum"
    if name in _SCHEDULES:
        if isinstance(value, str):
            return _as_deforum_reads(name, _SEED_NAME.sub("seed", value), warnings, comments)
        return value
    return value


def _as_deforum_reads(name: str, text: str, warnings: list[str], comments: dict[str, str]) -> str:
    """Keyframes Deforum's parser reads otherwise than they look: it splits a keyframe at every
    ':' and keeps the second piece, so ``0: 0: (expr)`` is the number 0. Kept as Deforum read it."""
    try:
        pieces = list(split_top_level(text, ","))
    except ScheduleError:
        return text  # the schedule's own error is clearer, at inspect
    kept = []
    for piece in pieces:
        parts = piece.text.split(":")
        if len(parts) <= 2 or not parts[1].strip():
            kept.append(piece.text.strip())
            continue
        value = parts[1].strip()
        kept.append(f"{parts[0].strip()}: ({value.strip('()') or '0'})")
        warnings.append(
            f"{'.'.join(FIELDS[name])}: Deforum reads nothing after the second ':' of {piece.text.strip()[:60]!r} "
            f"and used {value}; the preset does the same"
        )
        comments[".".join(FIELDS[name])] = f"as Deforum read it: {piece.text.strip()[:60]}"
    return ", ".join(kept)


def _sampler(value: Any, warnings: list[str]) -> str:
    if isinstance(value, int):
        warnings.append(f"sampler was stored as index {value}; using euler_a")
        return "euler_a"
    name = canonical_sampler(str(value))
    if name:
        return name
    approximate = APPROXIMATIONS.get(sampler_key(str(value)))
    if approximate:
        warnings.append(f"sampler {value!r} has no diffusers equivalent; using {approximate}")
        return approximate
    warnings.append(f"unknown sampler {value!r}; using euler_a")
    return "euler_a"


def _depth_model(value: str, warnings: list[str]) -> str:
    lowered = value.lower()
    if "beit" in lowered:
        return "Intel/dpt-beit-large-512"
    if "midas" in lowered:
        return "Intel/dpt-hybrid-midas"
    if "zoe" in lowered:
        return "Intel/zoedepth-nyu-kitti"
    if "depth-anything" in lowered or "depth anything" in lowered:
        return "depth-anything/Depth-Anything-V2-Small-hf"
    warnings.append(f"depth algorithm {value!r} is not available; using Depth Anything V2 small")
    return "depth-anything/Depth-Anything-V2-Small-hf"


def _prompts(data: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    """Prompts from any Deforum layout: A1111 dict, notebook dict/list, v0.7 cond/uncond."""
    imported: dict[str, Any] = {}
    prompts = data.get("prompts", data.get("animation_prompts"))
    if isinstance(prompts, str):
        try:
            prompts = json.loads(prompts)
        except json.JSONDecodeError:
            prompts = {"0": prompts}
    if isinstance(data.get("cond_prompts"), dict):
        prompts = _with_negatives(data["cond_prompts"], data.get("uncond_prompts"))
    if isinstance(prompts, list):
        imported["still_prompts"] = [str(p) for p in prompts]
    elif isinstance(prompts, dict) and prompts:
        if all(re.fullmatch(r"\d{5}", str(v)) for v in prompts.values()) and not all(
            str(k).strip().isdigit() for k in prompts
        ):
            imported["still_prompts"] = list(prompts)  # a still batch: prompt -> index
        else:
            imported["prompts"] = {
                str(k).strip(): _SEED_NAME.sub("seed", str(v)) if "`" in str(v) else str(v) for k, v in prompts.items()
            }
    positive = data.get("animation_prompts_positive")
    negative = data.get("animation_prompts_negative")
    # a run-saved file holds positive_prompts/negative_prompts instead: already merged into every prompt
    if isinstance(positive, str) and positive.strip():
        imported["scene_prefix"] = positive.strip() + " "
    if isinstance(negative, str) and negative.replace("--neg", "").strip():
        imported["negative_prompt"] = negative.replace("--neg", "").strip()
    return imported


def _with_negatives(cond: dict[str, Any], uncond: Any) -> dict[str, str]:
    """v0.7 notebook: separate keyed negative prompts -> ``--neg`` in each keyed prompt."""
    positive = _frame_table(cond, "cond_prompts")
    negative = _frame_table(uncond, "uncond_prompts") if isinstance(uncond, dict) else {}
    if not positive or not negative:
        return {str(frame): text for frame, text in positive.items()}

    def active(table: dict[int, str], frame: int) -> str:
        earlier = [key for key in table if key <= frame]
        return table[max(earlier) if earlier else min(table)]

    keys = sorted(positive.keys() | negative.keys())
    return {str(frame): f"{active(positive, frame)} --neg {active(negative, frame)}" for frame in keys}


def _frame_table(table: dict[str, Any], name: str) -> dict[int, str]:
    frames = {}
    for key, text in table.items():
        if not (str(key).strip().isascii() and str(key).strip().isdigit()):  # not "²": int() refuses it
            raise SettingsError(f"{name} key {key!r} is not a frame number", field=name, hint="keys are frames: 0, 30")
        frames[int(key)] = str(text)
    return frames


def _soundtrack(data: dict[str, Any]) -> dict[str, Any]:
    mode = str(data.get("add_soundtrack", "None"))
    if mode == "File" or data.get("add_soundtrack") is True:
        path = str(data.get("soundtrack_path") or "")
        return (
            {"soundtrack": "audio", "file": path} if path and not path.startswith("http") else {"soundtrack": "audio"}
        )
    if mode == "Init Video":
        return {"soundtrack": "init video"}
    return {"soundtrack": "none"} if "add_soundtrack" in data else {}


def _controlnet_units(data: dict[str, Any], warnings: list[str]) -> list[tuple[int, dict[str, Any]]]:
    """The enabled ``cn_N_*`` units as (N, [[controlnet]] entry); A1111 model names become the
    hub's diffusers ids where there is one, and a unit Driftwave cannot run is kept switched off."""
    units = []
    for number in sorted({int(m[1]) for key in data if (m := _CONTROLNET_KEY.match(key))}):
        values = {key[len(f"cn_{number}_") :]: value for key, value in data.items() if key.startswith(f"cn_{number}_")}
        if not _switched_on(values.get("enabled")):
            continue
        unit = {name: values[name] for name in ControlNetUnit.model_fields if name in values}
        position = len(units) + 1
        model = str(unit.get("model") or "None")
        unit["model"] = _controlnet_model(model, position, warnings)
        if str(unit.get("module")) in NOT_CONTROLNETS or unit["model"] == "None":
            unit["enabled"] = False
            warnings.append(
                f"cn_{number} ({unit.get('module')}, model {model}) is not a ControlNet Driftwave can run: imported "
                f"as controlnet.{position}, switched off"
            )
        path = str(unit.get("vid_path") or "").strip().strip('"')
        if path and not Path(path).expanduser().exists():
            warnings.append(f"controlnet.{position}.vid_path: {path!r} does not exist on this machine; set it to yours")
        units.append((number, unit))
    return units


def _controlnet_model(name: str, position: int, warnings: list[str]) -> str:
    """An A1111 ControlNet name ("control_v11p_sd15_canny [d14c016b]") as the hub's diffusers id."""
    bare = re.sub(r"_fp16$", "", re.sub(r"\s*\[[0-9a-fA-F]+\]$", "", name.strip()))
    if re.fullmatch(r"control_v11[a-z0-9]+_sd15[a-z0-9]*_\w+", bare):
        return f"lllyasviel/{bare}"
    if bare != "None" and not Path(bare).expanduser().exists():
        warnings.append(f"controlnet.{position}.model: {name!r} is an A1111 model name; set it to its file or hub id")
    return bare


def _is_on(key: str, value: Any) -> bool:
    """Whether an unsupported key's value says its feature was in use."""
    return key in _FEATURE_SWITCHES and _switched_on(value)


def _switched_on(value: Any) -> bool:
    """A Deforum switch's value, however the file wrote it (bool, "True", "None", "disabled", ...)."""
    if isinstance(value, str):
        return value.strip().lower() not in {"", "none", "false", "0", "disabled", "ignore"}
    return bool(value)


def _compact(keys: list[str]) -> str:
    """Key names, with ControlNet's cn_1_x ... cn_5_x shown once as cn_N_x."""
    shown = dict.fromkeys(re.sub(r"^cn_\d+_", "cn_N_", key) for key in keys)
    return ", ".join(shown)
