"""A render from settings to outputs: checks before the first frame, the run folder (new or
resumed), the plan, the backend and models, the mode's frames (engine.modes), the videos.

Everything per frame is compiled before the first one (engine.plan); what is wrong with the
settings is said before any model loads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.backends import Backend, load_backend
from engine.controlnet import check_controlnet
from engine.errors import DriftwaveError, collecting_notices, notify
from engine.flow import check_flow_method
from engine.frame_interpolation import check_interpolation, write_interpolated_video
from engine.frame_values import as_csv, as_srt, values_table, write_atomically
from engine.hybrid import check_hybrid, hybrid_in_use
from engine.images import load_image
from engine.masks import check_masks
from engine.modes import Modes, depth_model_for
from engine.outputs import RunFolder
from engine.plan import Plan, check_camera, compile_run, interpolation_length, without_missing_track
from engine.presets import save_preset
from engine.protocol import Done, Event, Log, RunStarted
from engine.seeds import pick_seed
from engine.settings import Settings
from engine.upscale import check_upscale, write_upscaled_video
from engine.video import write_gif, write_video
from engine.video_input import probe

SUPPORTED_MODES = ("None", "2D", "3D", "Video Input", "Interpolation")


@dataclass
class RenderResult:
    folder: Path
    frames: list[Path]
    video: Path | None
    settings: Settings
    outputs: list[Path] = field(default_factory=list)


def render(
    settings: Settings,
    *,
    backend: Backend | None = None,
    resume: str | None = None,
    on_event: Callable[[Event], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    timestring: str | None = None,
    take_update: Callable[[], Settings | None] | None = None,
) -> RenderResult:
    """Render ``settings``; ``resume`` continues the run with that timestring.

    ``take_update`` is polled before each diffused frame: new settings it returns (a live edit
    from the TUI) apply from that frame on and are recorded in the run's history, so a resume
    replays them at the same frames.
    """
    emit = on_event or (lambda event: None)
    if resume or settings.resume.resume_from_timestring:
        resume = resume or settings.resume.resume_timestring
        run = RunFolder.find(settings.batch.outdir, settings.batch.batch_name, resume, settings.batch.filename_format)
        settings = _resumed_settings(run, _with_length(settings))
    else:
        run = None
    if settings.sampling.seed == -1:
        settings = settings.model_copy(update={"sampling": settings.sampling.model_copy(update={"seed": pick_seed()})})
    settings, plan = prepared(settings)
    backend = backend or load_backend(settings.model)
    guided = check_guidance(settings, plan, backend.device)
    if guided is not settings:
        settings, plan = guided, compile_run(guided)
    depth = depth_model_for(settings, backend.device)
    if run is None:
        run = RunFolder.create(
            settings.batch.outdir, settings.batch.batch_name, settings.batch.filename_format, timestring
        )
        _write_settings(run, settings, backend)
        write_atomically(run.root / "values.csv", as_csv(values_table(plan)))
    emit(RunStarted(str(run.root), run.timestring, backend.name))
    modes = Modes(
        settings, plan, backend, run, emit, should_stop or (lambda: False), take_update or (lambda: None), depth
    )
    frames = modes.run_mode()
    result = RenderResult(run.root, frames, None, settings)
    if writes_videos(settings):
        videos = _write_videos(run, settings, modes.plan, frames, emit, backend.device)
        result.video = videos[0]
        result.outputs = [*frames, *videos]
    else:
        result.outputs = list(frames)
    emit(Done([str(path) for path in result.outputs]))
    return result


def prepared(settings: Settings) -> tuple[Settings, Plan]:
    """The settings as rendered (length from the mode, a missing track dropped) and their plan,
    checked as far as can be known before a model loads."""
    settings = _with_length(without_missing_track(settings))
    preflight(settings)
    plan = compile_run(settings)
    check_camera(plan)
    check_masks(settings, plan.text_schedules)
    return settings, plan


def writes_videos(settings: Settings) -> bool:
    """Whether the run ends by writing video.mp4 (and the interpolated and upscaled videos)."""
    return settings.animation.animation_mode != "None" and not settings.video.skip_video_creation


def preflight(settings: Settings) -> None:
    """What can be known before the first frame: mode, files, sizes."""
    mode = settings.animation.animation_mode
    if mode not in SUPPORTED_MODES:
        raise DriftwaveError(
            f"animation_mode {mode!r} is not available in this version",
            field="animation.animation_mode",
            hint=f"use one of {', '.join(SUPPORTED_MODES)}",
        )
    init = settings.init
    if init.use_init and init.init_image:
        load_image(init.init_image, field="init.init_image")
    elif init.use_init and mode != "Interpolation":
        raise DriftwaveError(
            "use_init is on but init_image is empty",
            field="init.init_image",
            hint="set init.init_image to an image file, or turn init.use_init off",
        )
    if init.use_mask and not init.use_alpha_as_mask:
        load_image(init.mask_file, field="init.mask_file")
    if hybrid_in_use(settings):
        check_hybrid(settings)
        if settings.hybrid.hybrid_use_init_image:
            load_image(init.init_image, field="init.init_image")
    check_controlnet(settings)
    if writes_videos(settings):
        check_upscale(settings.video)
        check_interpolation(settings.video)
    coherence, size = settings.coherence, (settings.image.W, settings.image.H)
    if coherence.optical_flow_cadence != "None" and coherence.diffusion_cadence > 1:
        check_flow_method(coherence.optical_flow_cadence, "coherence.optical_flow_cadence", size)
    if coherence.optical_flow_redo_generation != "None":
        check_flow_method(coherence.optical_flow_redo_generation, "coherence.optical_flow_redo_generation", size)


def _with_length(settings: Settings) -> Settings:
    """Modes whose length is not max_frames: Interpolation (the prompts' keys), Video Input."""
    mode = settings.animation.animation_mode
    if mode == "Interpolation":
        with collecting_notices():  # keys past max_frames are expected here
            frames = interpolation_length(settings, compile_run(settings))
        return settings.model_copy(update={"animation": settings.animation.model_copy(update={"max_frames": frames})})
    if mode == "Video Input":
        if settings.coherence.diffusion_cadence > 1:
            notify("Video Input diffuses every frame of the video; diffusion_cadence is not used")
        return _video_length(settings)
    if hybrid_in_use(settings) and not settings.hybrid.hybrid_use_init_image:
        return _video_length(settings)
    return settings


def _video_length(settings: Settings) -> Settings:
    """One frame per chosen video frame (Video Input, hybrid video), at the video's rate unless
    fps was set."""
    choice = settings.video_input
    info = probe(choice.video_init_path, "video_input.video_init_path")
    last = info.frames - 1 if choice.extract_to_frame < 0 else min(choice.extract_to_frame, info.frames - 1)
    frames = len(range(choice.extract_from_frame, last + 1, choice.extract_nth_frame))
    if frames == 0:
        raise DriftwaveError(
            f"the video has {info.frames} frames (0..{info.frames - 1}); none is chosen",
            field="video_input.extract_from_frame",
            hint=f"set extract_from_frame below {info.frames} and extract_to_frame after it (or -1)",
        )
    if choice.use_mask_video and settings.animation.animation_mode == "Video Input":
        probe(choice.video_mask_path, "video_input.video_mask_path")
    update: dict[str, Any] = {"max_frames": frames}
    if "fps" not in settings.animation.model_fields_set:
        update["fps"] = info.fps / choice.extract_nth_frame
    return settings.model_copy(update={"animation": settings.animation.model_copy(update=update)})


def check_guidance(settings: Settings, plan: Plan, device) -> Settings:
    """Guidance scales that are on somewhere: the images they compare with and the models they
    need, loaded before the first frame. A model that cannot be loaded stops the run, or drops
    its term with a notice when skip_unloadable_guidance is on (the returned settings)."""
    from engine.guidance import aesthetics_head, clip_model

    on = plan.guidance_on()
    options = settings.guidance
    video_is_mse_image = hybrid_in_use(settings) and settings.hybrid.hybrid_use_video_as_mse_image
    for scale, image in (("colormatch_scale", "colormatch_image"), ("init_mse_scale", "init_mse_image")):
        if scale == "init_mse_scale" and video_is_mse_image:
            continue
        if scale in on and not getattr(options, image):
            raise DriftwaveError(
                f"{scale} is on but {image} is empty", field=f"guidance.{image}", hint="give the path of an image"
            )
        if scale in on:
            load_image(getattr(options, image), field=f"guidance.{image}")
    if "clip_scale" in on and options.gradient_wrt == "x0_pred" and options.decode_method == "linear":
        notify(
            "clip_scale with gradient_wrt=x0_pred and decode_method=linear shows CLIP a blurred preview of the "
            "denoised image: set decode_method=autoencoder (or gradient_wrt=x) for guidance CLIP can see"
        )
    dropped = {}
    for scale, load in (
        ("clip_scale", lambda: clip_model(options.clip_name, device)),
        (
            "aesthetics_scale",
            lambda: (clip_model(options.clip_name, device), aesthetics_head(options.aesthetics_model, device)),
        ),
    ):
        if scale not in on:
            continue
        try:
            load()
        except DriftwaveError as error:
            if not options.skip_unloadable_guidance:
                raise
            notify(f"{error.message}: rendering without {scale}")
            dropped[scale] = "0"
    return settings.model_copy(update={"guidance": options.model_copy(update=dropped)}) if dropped else settings


def _write_settings(run: RunFolder, settings: Settings, backend: Backend) -> None:
    header = (
        f"Settings of run {run.timestring}, fully resolved (seed {settings.sampling.seed}).\n"
        f"Rendered with: {backend.name}."
    )
    save_preset(settings, run.root / "settings.toml", full=True, header=header)


def _resumed_settings(run: RunFolder, requested: Settings) -> Settings:
    from engine.presets import load_preset

    saved = load_preset(run.root / "settings.toml").settings
    if saved.model_dump(exclude={"resume"}) != requested.model_dump(exclude={"resume"}):
        notify("resuming with the settings saved in the run; the preset's other values are not used")
    return saved


def _write_videos(run: RunFolder, settings: Settings, plan: Plan, frames: list[Path], emit, device) -> list[Path]:
    """video.mp4 (its subtitles and GIF), then the interpolated and upscaled videos asked for."""
    options, fps = settings.video, settings.animation.fps
    audio, offset = soundtrack(settings, emit)
    try:
        video = write_video(
            frames, run.root / "video.mp4", fps, audio=audio, audio_offset=offset, max_frames=options.max_video_frames
        )
    except DriftwaveError as error:  # the frames are done: say so, and how to get the video
        raise DriftwaveError(
            f"the frames are done but the video is not: {error.message}",
            field=error.field,
            hint=f"the frames are kept in {run.frames}; resuming run {run.timestring} makes only the video",
        ) from None
    emit(Log(f"wrote {video}"))
    if options.save_srt:
        write_atomically(video.with_suffix(".srt"), as_srt(values_table(plan), fps))
    if options.make_gif:
        write_gif(video, run.root / "video.gif", fps)
    videos = [video, *_write_derived_videos(run.root, options, fps, frames, (audio, offset), emit, device)]
    if options.delete_imgs:
        for frame in frames:
            frame.unlink(missing_ok=True)
    return videos


def _write_derived_videos(folder: Path, options, fps: float, frames: list[Path], sound, emit, device) -> list[Path]:
    """The interpolated and the upscaled video of the frames the video shows, when asked for."""
    chosen, (audio, offset), videos = frames[: options.max_video_frames or None], sound, []
    if options.frame_interpolation_engine != "None":
        engine = options.frame_interpolation_engine
        emit(Log(f"interpolating {len(chosen)} frames x{options.frame_interpolation_x_amount} ({engine})"))
        videos.append(write_interpolated_video(chosen, folder, fps, options, device, audio=audio, offset=offset))
        emit(Log(f"wrote {videos[-1]}"))
    if options.r_upscale_video:
        emit(Log(f"upscaling {len(chosen)} frames {options.r_upscale_factor} with {options.r_upscale_model}"))
        videos.append(write_upscaled_video(chosen, folder, fps, options, device, audio=audio, offset=offset))
        emit(Log(f"wrote {videos[-1]}"))
    return videos


def soundtrack(settings: Settings, emit) -> tuple[Path | None, float]:
    """The video's sound and the offset into it it starts at (None: silent)."""
    if settings.video.soundtrack == "audio" and settings.audio.file:
        return Path(settings.audio.file), settings.audio.offset
    if settings.video.soundtrack == "init video" and settings.video_input.video_init_path:
        source = settings.video_input.video_init_path
        info = probe(source, "video_input.video_init_path")
        if info.has_audio:
            return Path(source), settings.video_input.extract_from_frame / info.fps
        emit(Log(f"{Path(source).name} has no sound: the video is silent"))
    return None, settings.audio.offset
