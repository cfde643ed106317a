"""What the TUI edits: the settings, the preset file they came from, and whether they changed.

Every edit goes through :meth:`Session.set`, which validates against the one settings model
and the schedule/prompt compilers, so a bad value is reported where it was typed and never
reaches the engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.errors import DriftwaveError, ErrorGroup, collecting_notices
from engine.plan import CONTROL_SCHEDULES, audio_names, compile_plan
from engine.presets import Preset, load_preset, save_preset, settings_from_data
from engine.prompts import compile_prompts
from engine.schedule import compile_schedule
from engine.settings import GROUPS, Settings, fields_of_kind

SCHEDULE_FIELDS = {f"{group}.{name}" for group, name in fields_of_kind("schedule")}


class Session:
    def __init__(self, preset: Preset | None = None) -> None:
        self.preset = preset or Preset(Settings())
        self.settings = self.preset.settings
        self.saved = self.settings

    @classmethod
    def open(cls, path: str | Path) -> Session:
        with collecting_notices():
            return cls(load_preset(path))

    @classmethod
    def of_job(cls, job: dict) -> Session:
        """The settings a running job renders with, over the preset it came from when that is at
        hand (so Save keeps the file's comments, and the job's live edits show as unsaved)."""
        with collecting_notices():
            settings = settings_from_data(job["settings"])
            preset = job.get("preset")
            session = cls(load_preset(preset)) if preset and Path(preset).is_file() else cls(Preset(settings))
        session.settings = settings
        return session

    @property
    def path(self) -> Path | None:
        return self.preset.path

    @property
    def dirty(self) -> bool:
        return self.settings != self.saved

    @property
    def title(self) -> str:
        name = self.path.name if self.path else "untitled"
        return f"{name}{' *' if self.dirty else ''}"

    def value(self, path: str) -> Any:
        return settings_value(self.settings, path)

    def set(self, path: str, value: Any) -> Settings:
        """Set ``group.name``, ``controlnet.N.name`` (unit N from 1) or ``prompts``; raise
        DriftwaveError with the field on bad input."""
        data = self.settings.model_dump(mode="json")
        if path == "prompts":
            data["prompts"] = dict(value)
        elif path.startswith("controlnet."):
            _, number, name = path.split(".")
            data["controlnet"][int(number) - 1][name] = value
        else:
            group, name = path.split(".", 1)
            data[group][name] = value
        return self._validated(data, path)

    def add_unit(self) -> int:
        """A new ControlNet unit (Deforum's defaults) at the end; its number."""
        data = self.settings.model_dump(mode="json")
        data["controlnet"].append({})
        self._validated(data, "controlnet")
        return len(self.settings.controlnet)

    def remove_unit(self, number: int) -> None:
        data = self.settings.model_dump(mode="json")
        del data["controlnet"][number - 1]
        self._validated(data, "controlnet")

    def _validated(self, data: dict[str, Any], path: str) -> Settings:
        with collecting_notices():
            settings = settings_from_data(data)
            check(settings, path)
        self.settings = settings
        return settings

    def save(self, path: str | Path | None = None) -> Path:
        target = Path(path) if path else self.path
        if target is None:
            raise DriftwaveError("this preset has no file yet", hint="use Save as")
        same_file = self.path is not None and target.resolve() == self.path.resolve()
        options = (
            {"base": self.preset.document, "original": self.preset.settings}
            if same_file and (self.preset.document is not None)
            else {}
        )
        save_preset(self.settings, target, **options)
        with collecting_notices():
            self.preset = load_preset(target)
        self.settings = self.saved = self.preset.settings
        return target

    def recovery_path(self) -> Path:
        """Where unsaved edits go when the TUI stops unexpectedly: beside the preset."""
        return (self.path or Path("untitled.toml")).with_suffix(".recovered.toml")


def check(settings: Settings, path: str) -> None:
    """Compile what ``path`` feeds: its schedule, or the prompts; anything else is checked by the model."""
    from engine.plan import timeline_of

    timeline = timeline_of(settings, bpm=settings.audio.bpm or 120.0)
    names = audio_names(settings)
    if path in SCHEDULE_FIELDS or is_unit_schedule(path):
        compile_schedule(
            settings_value(settings, path), timeline, names=names, blend=settings.animation.blend, field=path
        )
    elif path.startswith("prompt"):
        from engine.prompts import PromptOptions

        p = settings.prompting
        compile_prompts(
            settings.prompts,
            timeline,
            names=names,
            blend=settings.animation.blend,
            options=PromptOptions(p.scene_prefix, p.scene_suffix, p.negative_prompt, p.prompt_blend_frames),
        )
    elif path.split(".")[0] in ("animation", "audio"):
        try:
            compile_plan(settings)
        except ErrorGroup as group:
            raise group.errors[0] from None


def settings_value(settings: Settings, path: str) -> Any:
    if path.startswith("controlnet."):
        _, number, name = path.split(".")
        return getattr(settings.controlnet[int(number) - 1], name)
    group, name = path.split(".", 1)
    return getattr(getattr(settings, group), name)


def is_unit_schedule(path: str) -> bool:
    """``controlnet.N.weight`` and the unit's other schedules."""
    parts = path.split(".")
    return len(parts) == 3 and parts[0] == "controlnet" and parts[2] in CONTROL_SCHEDULES


def describe(path: str) -> str:
    group, name = path.split(".", 1)
    return GROUPS[group].model_fields[name].description or ""
