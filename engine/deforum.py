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

from engine.errors import DriftwaveError, ErrorGroup, SettingsError
from engine.presets import settings_from_data
from engine.samplers import APPROXIMATIONS, canonical_sampler, sampler_key
from engine.settings import FIELDS, Settings, fields_of_kind

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
    "parseq_manifest",
    "optical_flow_cadence",
    "optical_flow_redo_generation",
    "frame_interpolation_engine",
    "hybrid_generate_human_masks",
    "diffusion_redo",
    "use_looper",
    "r_upscale_video",
    "restore_faces",
    "use_noise_mask",
    "reroll_blank_frames",
}
CLIP_NAMES = {
    "vit-l/14": "openai/clip-vit-large-patch14",
    "vit-l/14@336px": "openai/clip-vit-large-patch14-336",
    "vit-b/16": "openai/clip-vit-base-patch16",
    "vit-b/32": "openai/clip-vit-base-patch32",
}
_FLOW_METHODS = {"DIS Medium", "DIS Fine", "Farneback", "DenseRLOF", "SF"}
_SCHEDULES = {name for _, name in fields_of_kind("schedule")}
_SEED_NAME = re.compile(r"(?<![\w.])s(?![\w(])")


@dataclass
class DeforumImport:
    settings: Settings
    kind: str  # "A1111 extension" or "notebook"
    mapped: set[str] = field(default_factory=set)  # "group.name" of every field the file set
    warnings: list[str] = field(default_factory=list)


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
            f"{path.name} is not a Deforum settings file (invalid JSON: {error.msg})",
            source=text,
            offset=error.pos,
            hint="Deforum writes its settings as JSON (<timestring>_settings.txt)",
        ) from None
    if not isinstance(data, dict) or not ({"animation_mode", "W", "prompts", "max_frames", "seed"} & data.keys()):
        raise SettingsError(f"{path.name} does not look like Deforum settings (no animation_mode, W, prompts...)")
    return import_deforum_data(data)


def import_deforum_data(data: dict[str, Any]) -> DeforumImport:
    """Map Deforum's keys onto Settings; everything not mapped is named in a warning."""
    kind = (
        "A1111 extension"
        if {"deforum_git_commit_id", "cfg_scale_schedule", "sd_model_name"} & data.keys()
        else "notebook"
    )
    data = _upgrade(dict(data), kind)
    values: dict[str, Any] = {}
    warnings: list[str] = []
    ignored: list[str] = []
    unsupported: list[str] = []
    for key, value in data.items():
        target = RENAMED.get(key, key)
        if key in SWITCHED:
            switch, target = SWITCHED[key]
            if not data.get(switch, False):
                continue
        elif key in HANDLED:
            continue
        elif key in NO_EFFECT:
            ignored.append(key)
            continue
        elif key.startswith("hybrid_video_") and key.replace("hybrid_video_", "hybrid_") in FIELDS:
            target = key.replace("hybrid_video_", "hybrid_")
        if target not in FIELDS:
            unsupported.append(key)
            continue
        converted = _convert(target, value, warnings)
        if converted is not None:
            values[target] = converted
    values.update(_prompts(data, warnings))
    values.update(_soundtrack(data))
    values["blend"] = "hold"
    values.setdefault("prompt_blend_frames", 0)
    if data.get("sd_model_name"):
        warnings.append(f"the file used the model {data['sd_model_name']!r}: set model.model to its path or hub id")
    active = [key for key in unsupported if _is_on(key, data[key])]
    if active:
        warnings.append(f"switched on in the file but not supported here (rendered without): {_compact(active)}")
    shown_active = set(_compact(active).split(", "))
    rest = [key for key in unsupported if key not in active and _compact([key]) not in shown_active]
    if rest:
        warnings.append(f"not supported here, left out: {_compact(rest)}")
    if ignored:
        warnings.append(f"no effect here (Deforum run state, or always on): {_compact(ignored)}")
    settings = _validated(values, warnings)
    mapped = {".".join(FIELDS[name]) for name in values if name in FIELDS} | {"prompts"}
    return DeforumImport(settings, kind, mapped, warnings)


def _validated(values: dict[str, Any], warnings: list[str]) -> Settings:
    """Validate; a value Driftwave cannot take falls back to the default, with a warning."""
    for _ in range(len(values) + 1):
        try:
            return settings_from_data(values)
        except DriftwaveError as error:
            problems = error.errors if isinstance(error, ErrorGroup) else [error]
            for problem in problems:
                name = (problem.field or "").split(".")[-1]
                if name not in values:
                    raise
                warnings.append(f"{name} = {values.pop(name)!r} cannot be used ({problem.message}); default kept")
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


def _convert(name: str, value: Any, warnings: list[str]) -> Any:
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
    if name == "hybrid_flow_method" and str(value) not in _FLOW_METHODS:
        warnings.append(f"hybrid_flow_method {value!r} is not available; using DIS Medium")
        return "DIS Medium"
    if name == "clip_name":
        return CLIP_NAMES.get(str(value).lower(), value)
    if name == "grad_inject_timing" and value is None:
        return "none"
    if name == "batch_name":
        return re.sub(r"[_\- ]*\{timestring\}[_\- ]*", "", str(value)) or "deforum"
    if name in _SCHEDULES:
        return _SEED_NAME.sub("seed", str(value)) if isinstance(value, str) else value
    return value


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
    values: dict[str, Any] = {}
    prompts = data.get("prompts", data.get("animation_prompts"))
    if isinstance(prompts, str):
        try:
            prompts = json.loads(prompts)
        except json.JSONDecodeError:
            prompts = {"0": prompts}
    if isinstance(data.get("cond_prompts"), dict):
        prompts = _with_negatives(data["cond_prompts"], data.get("uncond_prompts"))
    if isinstance(prompts, list):
        values["still_prompts"] = [str(p) for p in prompts]
    elif isinstance(prompts, dict) and prompts:
        if all(re.fullmatch(r"\d{5}", str(v)) for v in prompts.values()) and not all(
            str(k).strip().isdigit() for k in prompts
        ):
            values["still_prompts"] = list(prompts)  # a still batch: prompt -> index
        else:
            values["prompts"] = {
                str(k).strip(): _SEED_NAME.sub("seed", str(v)) if "`" in str(v) else str(v) for k, v in prompts.items()
            }
    positive = data.get("animation_prompts_positive")
    negative = data.get("animation_prompts_negative")
    # a run-saved file holds positive_prompts/negative_prompts instead: already merged into every prompt
    if isinstance(positive, str) and positive.strip():
        values["scene_prefix"] = positive.strip() + " "
    if isinstance(negative, str) and negative.replace("--neg", "").strip():
        values["negative_prompt"] = negative.replace("--neg", "").strip()
    return values


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


def _is_on(key: str, value: Any) -> bool:
    if key not in _FEATURE_SWITCHES and not re.fullmatch(r"cn_\d+_enabled", key):
        return False
    if isinstance(value, str):
        return value.strip().lower() not in {"", "none", "false", "0", "disabled", "ignore"}
    return bool(value)


def _compact(keys: list[str]) -> str:
    """Key names, with ControlNet's cn_1_x ... cn_5_x shown once as cn_N_x."""
    shown = dict.fromkeys(re.sub(r"^cn_\d+_", "cn_N_", key) for key in keys)
    return ", ".join(shown)
