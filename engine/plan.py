"""Compile a run before its first frame: every schedule and prompt weight becomes per-frame data.

``compile_plan`` reads :class:`Settings`, compiles every schedule field, text schedule and
prompt, and reports every problem at once (an :class:`ErrorGroup`), each naming its field.
Audio envelopes arrive as named arrays; without them the audio names read as zeros.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.errors import DriftwaveError, ErrorGroup, ScheduleError, SettingsError, collecting_notices, notify
from engine.frame_params import ControlValues, FrameParams, HybridMix, Motion2D, Motion3D, Unsharp, unit
from engine.mask_syntax import parse_mask
from engine.prompts import PromptOptions, PromptSchedule, compile_prompts
from engine.samplers import SAMPLERS, canonical_sampler
from engine.schedule import Schedule, TextSchedule, Timeline, compile_schedule, compile_text_schedule
from engine.seeds import seed_at
from engine.settings import AUDIO_BUILTINS, GUIDANCE_SCALES, Settings, fields_of_kind


@dataclass
class Plan:
    """Everything the render loop reads per frame, computed up front."""

    settings: Settings
    timeline: Timeline
    schedules: dict[str, Schedule] = field(default_factory=dict)
    values: dict[str, np.ndarray] = field(default_factory=dict)  # "motion.zoom" -> one value per frame
    text_schedules: dict[str, TextSchedule] = field(default_factory=dict)
    prompts: PromptSchedule | None = None
    still_prompts: PromptSchedule | None = None
    audio: dict[str, np.ndarray | float] = field(default_factory=dict)  # named variables, one value per frame

    def scope_at(self, frame: int) -> dict[str, float]:
        """The named variables' values at ``frame``, for per-frame prompt weights."""
        return {name: float(value[frame]) if np.ndim(value) else float(value) for name, value in self.audio.items()}

    def frame(self, index: int, *, seed_index: int | None = None) -> FrameParams:
        """Frame ``index``'s values from the per-frame arrays. ``seed_index``: which diffused
        frame it is, for the seed (with cadence, the group; default ``index``)."""
        values = self.values
        return self._params(
            index,
            lambda path: float(values[path][index]),
            self.prompts.at(index, self.scope_at(index)),
            index if seed_index is None else seed_index,
        )

    def frame_at(self, index: int, scope: Mapping[str, float], seconds: float) -> FrameParams:
        """Frame ``index``'s values on a live clock: the schedules evaluated at ``t`` = ``index``
        and ``s`` = ``seconds`` with ``scope``'s values (the newest audio envelopes)."""
        schedules = self.schedules
        return self._params(
            index,
            lambda path: schedules[path].at(index, scope, seconds=seconds),
            self.prompts.at(index, scope, seconds=seconds),
            index,
        )

    def _params(self, index: int, value: Callable[[str], float], prompt, seed_index: int) -> FrameParams:
        settings = self.settings
        sampling, batch = settings.sampling, settings.batch
        steps = int(value("sampling.steps_schedule")) if sampling.enable_steps_scheduling else sampling.steps
        sampler = sampling.sampler
        if sampling.enable_sampler_scheduling:
            sampler = canonical_sampler(self.text_schedules["sampling.sampler_schedule"].at(index)) or sampler
        subseed = int(value("sampling.subseed_schedule")) if sampling.enable_subseed_scheduling else -1
        seed = seed_at(
            sampling.seed,
            batch.seed_behavior,
            seed_index,
            iter_n=batch.seed_iter_N,
            scheduled=value("batch.seed_schedule"),
        )
        return FrameParams(
            frame=index,
            seed=seed,
            prompt=prompt,
            strength=unit(value("motion.strength_schedule")),
            cfg=value("sampling.scale"),
            steps=max(steps, 1),
            sampler=sampler,
            subseed=subseed,
            subseed_strength=value("sampling.subseed_strength_schedule") if subseed >= 0 else 0.0,
            noise_multiplier=value("sampling.noise_multiplier"),
            ddim_eta=value("sampling.ddim_eta"),
            clip_skip=max(int(value("sampling.clip_skip")), 1),
            noise=value("motion.noise_schedule"),
            contrast=value("motion.contrast_schedule"),
            unsharp=Unsharp(
                int(value("anti_blur.kernel_schedule")),
                value("anti_blur.sigma_schedule"),
                value("anti_blur.amount_schedule"),
                value("anti_blur.threshold_schedule"),
            ),
            motion=camera_motion(settings, value),
            hybrid=HybridMix(
                flow_factor=value("hybrid.hybrid_flow_factor_schedule"),
                alpha=value("hybrid.hybrid_comp_alpha_schedule"),
                mask_blend_alpha=value("hybrid.hybrid_comp_mask_blend_alpha_schedule"),
                mask_contrast=value("hybrid.hybrid_comp_mask_contrast_schedule"),
                cutoff_low=value("hybrid.hybrid_comp_mask_auto_contrast_cutoff_low_schedule"),
                cutoff_high=value("hybrid.hybrid_comp_mask_auto_contrast_cutoff_high_schedule"),
            ),
            guidance={name: value(f"guidance.{name}") for name in GUIDANCE_SCALES},
            cadence_flow_factor=value("coherence.cadence_flow_factor_schedule"),
            redo_flow_factor=value("coherence.redo_flow_factor_schedule"),
            controlnet=tuple(
                ControlValues(*(value(f"controlnet.{n}.{name}") for name in CONTROL_SCHEDULES))
                for n in range(1, len(settings.controlnet) + 1)
            ),
            mask=self.text_schedules["init.mask_schedule"].at(index),
            noise_mask=self.text_schedules["coherence.noise_mask_schedule"].at(index),
        )

    def guidance_on(self) -> set[str]:
        """The guidance scales that are not 0 on some frame."""
        return {name for name in GUIDANCE_SCALES if (self.values[f"guidance.{name}"] != 0).any()}


MASK_SCHEDULES = ("init.mask_schedule", "coherence.noise_mask_schedule")
CONTROL_SCHEDULES = ("weight", "guidance_start", "guidance_end")  # a ControlNet unit's, as ControlValues holds them
MOTION_3D_FIELDS = (
    "translation_x",
    "translation_y",
    "translation_z",
    "rotation_3d_x",
    "rotation_3d_y",
    "rotation_3d_z",
)
PERSPECTIVE_FLIP = ("theta", "phi", "gamma", "fv")


def camera_motion(settings: Settings, value: Callable[[str], float]) -> Motion2D | Motion3D:
    """The frame's camera move from its schedule values: 3D in 3D mode, else 2D."""
    if settings.animation.animation_mode == "3D":
        depth, image = settings.depth, settings.image
        aspect = image.W / image.H if depth.aspect_ratio_use_old_formula else value("depth.aspect_ratio_schedule")
        moves = (value(f"motion.{name}") for name in MOTION_3D_FIELDS)
        return Motion3D(*moves, fov=value("depth.fov_schedule"), aspect=aspect)
    perspective = None
    if settings.motion.enable_perspective_flip:
        perspective = tuple(value(f"motion.perspective_flip_{name}") for name in PERSPECTIVE_FLIP)
    return Motion2D(
        angle=value("motion.angle"),
        zoom=value("motion.zoom"),
        translation_x=value("motion.translation_x"),
        translation_y=value("motion.translation_y"),
        center_x=value("motion.transform_center_x"),
        center_y=value("motion.transform_center_y"),
        perspective=perspective,
    )


def check_camera(plan: Plan) -> None:
    """3D: a field of view inside (0, 180) and near before far, at every frame."""
    if plan.settings.animation.animation_mode != "3D":
        return
    values = plan.values
    fov = values["depth.fov_schedule"]
    bad = next((i for i, v in enumerate(fov) if not 0 < float(v) < 180), None)
    if bad is not None:
        raise DriftwaveError(
            f"the field of view is {float(fov[bad]):g} degrees at frame {bad}",
            field="depth.fov_schedule",
            hint="keep it between 0 and 180 (70 is a good start)",
        )
    near, far = values["depth.near_schedule"], values["depth.far_schedule"]
    bad = next((i for i in range(len(near)) if float(near[i]) >= float(far[i])), None)
    if bad is not None:
        raise DriftwaveError(
            f"the near plane ({float(near[bad]):g}) is not before the far plane ({float(far[bad]):g}) at frame {bad}",
            field="depth.near_schedule",
            hint="make near_schedule smaller than far_schedule (200 and 10000 are Deforum's)",
        )


def audio_names(settings: Settings) -> set[str]:
    """The named variables of these settings: the track's (or live input's), live mode's controls."""
    return track_names(settings) | set(settings.live.variables)


def track_names(settings: Settings) -> set[str]:
    """Variables the audio module provides for these settings."""
    return set(AUDIO_BUILTINS) | {audio_filter.name for audio_filter in settings.audio.filters}


def timeline_of(settings: Settings, *, bpm: float | None = None, seed: int | None = None) -> Timeline:
    """The timeline schedules are compiled against (``bpm``: detected tempo, if any)."""
    tempo = settings.audio.bpm or bpm or None
    return Timeline(
        frames=settings.animation.max_frames,
        fps=settings.animation.fps,
        bpm=tempo,
        seed=settings.sampling.seed if seed is None else seed,
    )


def compile_plan(
    settings: Settings,
    variables: Mapping[str, np.ndarray | float] | None = None,
    *,
    timeline: Timeline | None = None,
) -> Plan:
    """Compile and evaluate all schedules and prompts; raise every problem found."""
    timeline = timeline or timeline_of(settings)
    names = audio_names(settings)
    scope = {name: np.zeros(timeline.frames) for name in names} | {"bpm": float(timeline.bpm or 0.0)}
    scope.update(variables or {})
    plan = Plan(settings, timeline, audio=scope)
    problems = _Problems()
    _compile_schedules(plan, names, problems)
    _compile_prompts(plan, names, problems)
    problems.raise_any()
    silent = sorted(_names_used(plan) & names - set(variables or {}) - {"bpm"})
    if silent:
        notify(f"no audio is loaded, so {', '.join(silent)} read as 0 on every frame")
    return plan


class _Problems:
    """Every problem of a compile, each located at its field, raised together at the end."""

    def __init__(self) -> None:
        self.found: list[DriftwaveError] = []

    def attempt(self, path: str, work: Callable[[], object]) -> None:
        try:
            work()
        except ErrorGroup as group:
            self.found.extend(error.located(field=path) for error in group.errors)
        except DriftwaveError as error:
            self.found.append(error.located(field=path))

    def raise_any(self) -> None:
        if self.found:
            raise self.found[0] if len(self.found) == 1 else ErrorGroup(self.found)


def _compile_schedules(plan: Plan, names: set[str], problems: _Problems) -> None:
    """Every schedule field compiled and evaluated over the timeline; the text schedules too."""
    settings, timeline, blend = plan.settings, plan.timeline, plan.settings.animation.blend

    def number_schedule(path: str, text: str) -> None:
        schedule = compile_schedule(text, timeline, names=names, blend=blend, field=path)
        plan.schedules[path] = schedule
        plan.values[path] = schedule.evaluate(plan.audio)

    def text_schedule(path: str, text: str) -> None:
        plan.text_schedules[path] = compile_text_schedule(text, timeline, blend=blend, field=path)

    for number, control in enumerate(settings.controlnet, 1):  # [[controlnet]] units: controlnet.1.weight, ...
        for name in CONTROL_SCHEDULES:
            path, text = f"controlnet.{number}.{name}", getattr(control, name)
            problems.attempt(path, lambda path=path, text=text: number_schedule(path, text))
    for kind, compile_one in (("schedule", number_schedule), ("text_schedule", text_schedule)):
        for group, name in fields_of_kind(kind):
            path = f"{group}.{name}"
            text = getattr(getattr(settings, group), name)
            problems.attempt(path, lambda path=path, text=text, work=compile_one: work(path, text))
    samplers = plan.text_schedules.get("sampling.sampler_schedule")
    if samplers is not None:
        problems.attempt("sampling.sampler_schedule", lambda: _check_samplers(samplers))
    for path in MASK_SCHEDULES:
        if path in plan.text_schedules:
            problems.attempt(path, lambda path=path: _check_masks(plan.text_schedules[path]))


def _compile_prompts(plan: Plan, names: set[str], problems: _Problems) -> None:
    """The keyed prompts over the timeline, and the still prompts (one image each)."""
    settings, timeline = plan.settings, plan.timeline
    prompting, blend = settings.prompting, settings.animation.blend

    def options(blend_frames: int) -> PromptOptions:
        return PromptOptions(
            prompting.scene_prefix,
            prompting.scene_suffix,
            prompting.negative_prompt,
            blend_frames,
            prompting.prompt_syntax,
        )

    def keyed() -> None:
        chosen = options(prompting.prompt_blend_frames)
        plan.prompts = compile_prompts(settings.prompts, timeline, names=names, options=chosen, blend=blend)

    problems.attempt("prompts", keyed)
    stills = {str(index): text for index, text in enumerate(prompting.still_prompts)}
    if not stills:
        return

    def still() -> None:
        one_each = Timeline(len(stills), timeline.fps, timeline.bpm, timeline.seed)
        plan.still_prompts = compile_prompts(
            stills, one_each, names=names, options=options(0), field="prompting.still_prompts"
        )

    problems.attempt("prompting.still_prompts", still)


def interpolation_positions(settings: Settings, plan: Plan) -> list[float]:
    """Interpolation mode: the keyed prompts' frames, or every interpolate_x_frames + 1 frames."""
    keys = plan.prompts.keys
    if settings.interpolation.interpolate_key_frames:
        return [key.position for key in keys]
    step = settings.interpolation.interpolate_x_frames + 1
    return [float(index * step) for index in range(len(keys))]


def interpolation_length(settings: Settings, plan: Plan) -> int:
    return round(interpolation_positions(settings, plan)[-1]) + 1


def switched_off(settings: Settings) -> set[str]:
    """Schedule fields whose enable switch (or mode) is off: compiled, but not used."""
    sampling, off = settings.sampling, set()
    if settings.batch.seed_behavior != "schedule":
        off.add("batch.seed_schedule")
    if not sampling.enable_steps_scheduling:
        off.add("sampling.steps_schedule")
    if not sampling.enable_sampler_scheduling:
        off.add("sampling.sampler_schedule")
    if not sampling.enable_checkpoint_scheduling:
        off.add("sampling.checkpoint_schedule")
    if not sampling.enable_subseed_scheduling:
        off |= {"sampling.subseed_schedule", "sampling.subseed_strength_schedule"}
    if not settings.motion.enable_perspective_flip:
        off |= {f"motion.perspective_flip_{part}" for part in ("theta", "phi", "gamma", "fv")}
    return off


def _names_used(plan: Plan) -> set[str]:
    used = set().union(*(schedule.names for schedule in plan.schedules.values()))
    for prompts in (plan.prompts, plan.still_prompts):
        for key in prompts.keys if prompts else ():
            for sub in key.scene.subprompts():
                for expression in (*sub.weight.expressions, *(e for c in sub.chunks for e in c.weight.expressions)):
                    used |= expression.names
    return used


_BEAT_POSITION = re.compile(r"(?<![\w.])\d*\.?\d+\s*b\s*[:\"']")


def without_missing_track(settings: Settings) -> Settings:
    """A track that is not on this machine: an error when a schedule or prompt reads its envelopes,
    else the run goes on without it (no sound in the video), with a notice."""
    track = settings.audio.file
    if not track or Path(track).is_file():
        return settings
    silent = settings.model_copy(
        update={
            "audio": settings.audio.model_copy(update={"file": ""}),
            "video": settings.video.model_copy(
                update={"soundtrack": "none" if settings.video.soundtrack == "audio" else settings.video.soundtrack}
            ),
        }
    )
    with collecting_notices():
        used = sorted(_names_used(compile_plan(silent)) & (track_names(settings) - {"bpm"}))
    if used or uses_beat_positions(settings):
        reads = f"the schedules read {', '.join(used)}" if used else "keyframes are placed in beats"
        raise SettingsError(
            f"the audio track {track} does not exist, and {reads}",
            field="audio.file",
            hint="give the path of the track on this machine",
        )
    notify(f"audio.file {track} does not exist; no schedule reads it, so the video is made without sound")
    return silent


def compile_run(settings: Settings) -> Plan:
    """:func:`compile_plan` with the preset's audio track analysed: the variables it uses."""
    settings = without_missing_track(settings)
    if not settings.audio.file:
        return compile_plan(settings)
    from audio.envelopes import analyze_settings

    with collecting_notices():  # a first pass finds which audio variables the run reads
        probe = compile_plan(settings, timeline=timeline_of(settings, bpm=settings.audio.bpm or 120.0))
    need = _names_used(probe) & track_names(settings)
    if uses_beat_positions(settings):
        need.add("bpm")
    modified = Path(settings.audio.file).stat().st_mtime if Path(settings.audio.file).exists() else 0.0
    key = (settings.audio.model_dump_json(), modified, probe.timeline.frames, settings.animation.fps, frozenset(need))
    if key not in _ANALYSES:  # live edits recompile the plan: analyse the track once
        _ANALYSES.clear()
        _ANALYSES[key] = analyze_settings(settings, probe.timeline.frames, settings.animation.fps, need)
    analysis = _ANALYSES[key]
    return compile_plan(settings, analysis.values, timeline=timeline_of(settings, bpm=analysis.bpm))


_ANALYSES: dict[tuple, object] = {}


def uses_beat_positions(settings: Settings) -> bool:
    """Whether any keyframe or prompt key is written in beats (``8b``), which needs the tempo."""
    texts = [getattr(getattr(settings, group), name) for group, name in fields_of_kind("schedule")]
    texts += [f"{key}:" for key in settings.prompts]
    return any(_BEAT_POSITION.search(text) for text in texts)


def _check_masks(schedule: TextSchedule) -> None:
    for _, text in schedule.keys:
        parse_mask(text, field=schedule.field)


def _check_samplers(schedule: TextSchedule) -> None:
    for _, name in schedule.keys:
        if canonical_sampler(name) is None:
            raise ScheduleError(
                f"unknown sampler {name!r}",
                field=schedule.field,
                source=schedule.source,
                offset=max(schedule.source.find(name), 0),
                hint=f"samplers: {', '.join(SAMPLERS)}",
            )
