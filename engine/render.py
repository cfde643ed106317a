"""The animation loop: modes, cadence, seeds, resume, outputs.

Per diffused frame the loop reads top to bottom as Deforum's does: warp the previous image,
keep its colours, add contrast and grain, generate at the frame's strength, seed and prompt,
then write the frames of the cadence group (cross-fades of the previous and new image, both
warped along the motion). Everything per frame was compiled before the first one (plan).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine import coherence
from engine.backends import Backend, GenerationRequest, load_backend
from engine.camera import move_camera
from engine.errors import DriftwaveError, collecting_notices, notify
from engine.frame_values import as_csv, as_srt, values_table, write_atomically
from engine.guidance import SCALES, GuidanceRequest, extract_palette
from engine.hybrid import HybridVideo, check_hybrid, hybrid_in_use
from engine.images import from_array, load_image, write_image
from engine.outputs import RunFolder, deferred_interrupt
from engine.plan import Plan, compile_run, interpolation_length, interpolation_positions, without_missing_track
from engine.presets import save_preset
from engine.samplers import canonical_sampler
from engine.seeds import pick_seed, seed_at
from engine.settings import Settings
from engine.video import write_gif, write_video
from engine.video_input import VideoFrames, open_video_input, probe

Event = dict[str, Any]
SUPPORTED_MODES = ("None", "2D", "3D", "Video Input", "Interpolation")


@dataclass
class RenderResult:
    folder: Path
    frames: list[Path]
    video: Path | None
    settings: Settings
    outputs: list[Path] = field(default_factory=list)


class Interrupted(DriftwaveError):
    """The run was stopped on request; its state is saved and it can be resumed."""


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
    settings = _with_length(without_missing_track(settings))
    preflight(settings)
    plan = compile_run(settings)
    check_camera(settings, plan)
    backend = backend or load_backend(settings.model)
    guided = check_guidance(settings, plan, backend.device)
    if guided is not settings:
        settings, plan = guided, compile_run(guided)
    depth = _depth_model(settings, backend.device)
    if run is None:
        run = RunFolder.create(
            settings.batch.outdir, settings.batch.batch_name, settings.batch.filename_format, timestring
        )
        _write_settings(run, settings, backend)
        write_atomically(run.root / "values.csv", as_csv(values_table(plan)))
    emit({"type": "log", "message": f"rendering to {run.root} with {backend.name}"})
    loop = Loop(
        settings, plan, backend, run, emit, should_stop or (lambda: False), take_update or (lambda: None), depth
    )
    mode = settings.animation.animation_mode
    if mode == "Video Input":
        loop.video = open_video_input(settings.video_input, run.root.parent, (settings.image.W, settings.image.H))
    if hybrid_in_use(settings):
        loop.hybrid = _hybrid_video(settings, loop, depth)
    runs = {"None": loop.stills, "Interpolation": loop.interpolation, "Video Input": loop.video_input}
    frames = runs.get(mode, loop.animation)()
    result = RenderResult(run.root, frames, None, settings)
    if mode != "None" and not settings.video.skip_video_creation:
        result.video = _write_videos(run, settings, loop.plan, frames, emit)
    result.outputs = [*frames, *([result.video] if result.video else [])]
    emit({"type": "done", "outputs": [str(path) for path in result.outputs]})
    return result


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


def check_camera(settings: Settings, plan: Plan) -> None:
    """3D: a field of view inside (0, 180) and near before far, at every frame."""
    if settings.animation.animation_mode != "3D":
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


def check_guidance(settings: Settings, plan: Plan, device) -> Settings:
    """Guidance scales that are on somewhere: the images they compare with and the models they
    need, loaded before the first frame. A model that cannot be loaded stops the run, or drops
    its term with a notice when skip_unloadable_guidance is on (the returned settings)."""
    from engine.guidance import aesthetics_head, clip_model

    on = {name for name in SCALES if (plan.values[f"guidance.{name}"] != 0).any()}
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


def _depth_model(settings: Settings, device):
    """The depth model of a 3D run or a depth composite mask (None: flat depth), loaded before
    the first frame."""
    depth = settings.depth
    warping = settings.animation.animation_mode == "3D" and depth.use_depth_warping
    masking = hybrid_in_use(settings) and settings.hybrid.hybrid_comp_mask_type in ("Depth", "Video Depth")
    if not (warping or masking):
        return None
    from engine.depth import load_depth_model

    return load_depth_model(depth.depth_model, device)


# -- the loop -------------------------------------------------------------------------------------


class Loop:
    def __init__(
        self,
        settings: Settings,
        plan: Plan,
        backend: Backend,
        run: RunFolder,
        emit,
        should_stop,
        take_update,
        depth_model=None,
    ) -> None:
        self.base = settings
        self.settings = settings
        self.plan = plan
        self.values = plan.values
        self.backend = backend
        self.device = backend.device
        self.run = run
        self.emit = emit
        self.should_stop = should_stop
        self.width, self.height = settings.image.W, settings.image.H
        self.started = time.monotonic()
        self.done = 0
        self.init_image, self.mask = self._init_and_mask()
        self._reference: coherence.ColorReference | None = None
        self.take_update = take_update
        self.history = run.load_history()  # live edits: (first frame, settings from then on)
        self.depth_model = depth_model  # 3D with a depth model; None: flat depth
        self.video: VideoFrames | None = None  # Video Input: the chosen frames of the video
        self._video_reference: tuple[int, coherence.ColorReference] | None = None
        self.hybrid: HybridVideo | None = None  # 2D/3D following or compositing a video
        self._guidance_images: tuple[torch.Tensor | None, torch.Tensor | None] | None = None

    def _follow_history(self, frame: int) -> None:
        """Take a pending live edit (from this frame on), then use the settings in effect here."""
        update = self.take_update()
        if update is not None:
            self.history = [entry for entry in self.history if entry[0] < frame] + [(frame, update)]
            self.run.save_history(self.history)
            self.emit({"type": "log", "message": f"edit applied from frame {frame}"})
        current = next((s for start, s in reversed(self.history) if start <= frame), self.base)
        if current is not self.settings:
            self.settings, self.plan = current, compile_run(current)
            self.values = self.plan.values

    # -- 2D ---------------------------------------------------------------------------------------

    def animation(self) -> list[Path]:
        settings, values = self.settings, self.values
        total = settings.animation.max_frames
        cadence = settings.coherence.diffusion_cadence
        start, older, reference = 0, None, None
        if (self.run.root / "state.json").exists():
            state, tensors = self.run.load_state(self.device)
            start, older, reference = state["next_group"], tensors.get("older"), tensors.get("color_reference")
            self.emit({"type": "log", "message": f"resuming at frame {start * cadence}"})
        for group in range(start, math.ceil(total / cadence)):
            first = group * cadence
            self._follow_history(first)
            values = self.values
            seed = self._seed(group, first)
            if older is None:
                warped, init, strength = None, self._first_init(seed), self._first_strength()
            else:
                warped = self._move(older, first)
                init = self._prepare_init(warped, reference, first, seed)
                strength = float(values["motion.strength_schedule"][first])
            image = self._generate(first, seed, init, strength)
            image, reference = self._after_generation(image, reference, init)
            if self.hybrid is not None and self.settings.hybrid.hybrid_composite == "After Generation":
                image = self.hybrid.composite(image, first, self.values)
            newer, previous = image, warped
            with deferred_interrupt():
                for index in range(first, min(first + cadence, total)):
                    if index > first:  # both along the same camera, at the depth of the newer image
                        depth = self._depth(newer, index)
                        newer = self._warp(self._follow_video(newer, index), index, depth)
                        if previous is not None:
                            previous = self._warp(self._follow_video(previous, index), index, depth)
                    share = (index - first + 1) / cadence
                    frame = newer if previous is None or share >= 1 else previous * (1 - share) + newer * share
                    self._write(index, frame, seed, total)
                self.run.save_state(
                    {
                        "next_group": group + 1,
                        "frames_done": min(first + cadence, total),
                        "seed": settings.sampling.seed,
                    },
                    {"older": newer, "color_reference": reference},
                )
            older = newer
            self._check_stop()
        return self.run.written_frames()

    def _first_init(self, seed: int) -> torch.Tensor | None:
        if self.init_image is None:
            return None
        init = self.init_image
        if self.settings.init.add_init_noise and self.settings.init.init_noise > 0:
            init = coherence.add_white_noise(init, self.settings.init.init_noise * 2, seed)
        return init

    def _first_strength(self) -> float:
        if self.init_image is not None:
            return self.settings.init.strength
        return 0.0 if self.settings.init.strength_0_no_init else self.settings.init.strength

    def _prepare_init(self, warped: torch.Tensor, reference, frame: int, seed: int) -> torch.Tensor:
        """The warped frame made the next init in the order of Deforum's render loop (render.py):
        colour match, grayscale, contrast, anti-blur, grain."""
        values, settings = self.values, self.settings
        image = self._match(warped, reference) if reference is not None else warped
        if settings.coherence.color_force_grayscale:
            image = coherence.grayscale(image)
        image = coherence.apply_contrast(image, float(values["motion.contrast_schedule"][frame]))
        image = coherence.unsharp_mask(
            image,
            int(values["anti_blur.kernel_schedule"][frame]),
            float(values["anti_blur.sigma_schedule"][frame]),
            float(values["anti_blur.amount_schedule"][frame]),
            float(values["anti_blur.threshold_schedule"][frame]),
        )
        noise = settings.coherence
        return coherence.add_noise(
            image,
            float(values["motion.noise_schedule"][frame]),
            seed,
            kind=noise.noise_type,
            perlin_cells=(noise.perlin_w, noise.perlin_h),
            octaves=noise.perlin_octaves,
            persistence=noise.perlin_persistence,
        )

    def _after_generation(self, image: torch.Tensor, reference, init) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Deforum's order after a generation: the colour match again (unless legacy_colormatch),
        grayscale, the mask overlay."""
        settings = self.settings.coherence
        if reference is None:
            reference = image if settings.color_coherence in ("LAB", "HSV", "RGB") else self._coherence_image()
        elif not settings.legacy_colormatch:
            image = self._match(image, reference)
        if settings.color_force_grayscale:
            image = coherence.grayscale(image)
        if self.mask is not None and self.settings.init.overlay_mask and init is not None:
            keep = coherence.gaussian_blur(self.mask, self.settings.init.mask_overlay_blur * 2 + 1, 0)
            image = keep * init + (1 - keep) * image
        return image, reference

    def _coherence_image(self) -> torch.Tensor | None:
        path = self.settings.coherence.color_coherence_image_path
        if self.settings.coherence.color_coherence == "Image" and path:
            return from_array(
                load_image(path, (self.width, self.height), field="coherence.color_coherence_image_path")[..., :3],
                self.device,
            )
        return None

    def _match(self, image: torch.Tensor, reference: torch.Tensor | None) -> torch.Tensor:
        space = self.settings.coherence.color_coherence
        if reference is None or space in ("None", "Video Input"):
            return image
        if self._reference is None or self._reference.image is not reference:  # measured once per run
            self._reference = coherence.ColorReference(reference, "RGB" if space == "Image" else space)
        return self._reference.match(image)

    # -- Video Input -------------------------------------------------------------------------------

    def video_input(self) -> list[Path]:
        """Each chosen video frame restyled at the strength schedule, its colours kept as set; the
        mask video's white areas keep the video frame."""
        total = self.settings.animation.max_frames
        start, reference = 0, None
        if (self.run.root / "state.json").exists():
            state, tensors = self.run.load_state(self.device)
            start, reference = state["next_group"], tensors.get("color_reference")
            self.emit({"type": "log", "message": f"resuming at frame {start}"})
        for index in range(start, total):
            self._follow_history(index)
            seed = self._seed(index, index)
            source, keep = self.video.frame(index), self.video.mask(index)
            init = self._prepare_init(source, reference, index, seed)
            request = self._request(index, seed, init, float(self.values["motion.strength_schedule"][index]))
            if keep is not None:
                request.mask = keep
            image, reference = self._after_generation(self.backend.generate(request), reference, init)
            if self.settings.coherence.color_coherence == "Video Input":
                image = self._match_video(image, index)
            if keep is not None:
                image = keep * source + (1 - keep) * image
            with deferred_interrupt():
                self._write(index, image, seed, total)
                self.run.save_state(
                    {"next_group": index + 1, "frames_done": index + 1, "seed": self.settings.sampling.seed},
                    {"color_reference": reference},
                )
            self._check_stop()
        return self.run.written_frames()

    def _match_video(self, image: torch.Tensor, index: int) -> torch.Tensor:
        """Colours of the video frame, re-taken every color_coherence_video_every_N_frames (in LAB)."""
        every = self.settings.coherence.color_coherence_video_every_N_frames
        taken = index - index % every
        if self._video_reference is None or self._video_reference[0] != taken:
            self._video_reference = (taken, coherence.ColorReference(self.video.frame(taken), "LAB"))
        return self._video_reference[1].match(image)

    # -- Interpolation ----------------------------------------------------------------------------

    def interpolation(self) -> list[Path]:
        settings = self.settings
        from engine.prompts import PromptOptions, compile_prompts
        from engine.schedule import Timeline

        keys = self.plan.prompts.keys
        positions = interpolation_positions(settings, self.plan)
        total = settings.animation.max_frames
        prompting = settings.prompting
        prompts = compile_prompts(
            {f"{position:g}": key.scene.source for position, key in zip(positions, keys, strict=True)},
            Timeline(total, settings.animation.fps, self.plan.timeline.bpm, settings.sampling.seed),
            names=set(self.plan.audio),
            blend=settings.animation.blend,
            options=PromptOptions(prompting.scene_prefix, prompting.scene_suffix, prompting.negative_prompt, -1),
        )
        init = self.init_image
        for index in range(total):
            seed = seed_at(
                settings.sampling.seed, settings.batch.seed_behavior, index, iter_n=settings.batch.seed_iter_N
            )
            if init is not None and index > 0:
                init = self._warp(init, index)
            request = self._request(index, seed, init, settings.init.strength if init is not None else 0.0)
            request.prompt = prompts.at(index, self.plan.scope_at(index))
            image, _ = self._after_generation(self.backend.generate(request), None, init)
            with deferred_interrupt():
                self._write(index, image, seed, total)
            self._check_stop()
        return self.run.written_frames()

    # -- None (stills) ----------------------------------------------------------------------------

    def stills(self) -> list[Path]:
        settings, batch = self.settings, self.settings.batch
        prompts = self.plan.still_prompts
        images, paths, index = [], [], 0
        total = len(prompts.keys) * batch.n_batch * batch.n_samples
        for key in prompts.keys:
            for _ in range(batch.n_batch * batch.n_samples):
                seed = seed_at(settings.sampling.seed, batch.seed_behavior, index, iter_n=batch.seed_iter_N)
                request = self._request(0, seed, self.init_image, self._first_strength())
                request.prompt = prompts.at(int(key.position))
                image, _ = self._after_generation(self.backend.generate(request), None, self.init_image)
                images.append(image)
                with deferred_interrupt():
                    paths.append(self._write(index, image, seed, total, prompt=key.scene.source))
                index += 1
        if batch.make_grid and images:
            paths.append(write_image(_grid(images, batch.grid_rows), self.run.root / "grid.png"))
        return paths

    # -- shared steps -----------------------------------------------------------------------------

    def _seed(self, group: int, frame: int) -> int:
        batch = self.settings.batch
        return seed_at(
            self.settings.sampling.seed,
            batch.seed_behavior,
            group,
            iter_n=batch.seed_iter_N,
            scheduled=float(self.values["batch.seed_schedule"][frame]),
        )

    def _generate(self, frame: int, seed: int, init, strength: float) -> torch.Tensor:
        return self.backend.generate(self._request(frame, seed, init, strength))

    def _request(self, frame: int, seed: int, init, strength: float) -> GenerationRequest:
        settings, values = self.settings, self.values
        sampling = settings.sampling
        steps = int(values["sampling.steps_schedule"][frame]) if sampling.enable_steps_scheduling else sampling.steps
        sampler = sampling.sampler
        if sampling.enable_sampler_scheduling:
            sampler = canonical_sampler(self.plan.text_schedules["sampling.sampler_schedule"].at(frame)) or sampler
        subseed = int(values["sampling.subseed_schedule"][frame]) if sampling.enable_subseed_scheduling else -1
        return GenerationRequest(
            prompt=self.plan.prompts.at(frame, self.plan.scope_at(frame)),
            seed=seed,
            width=self.width,
            height=self.height,
            steps=max(steps, 1),
            cfg=float(values["sampling.scale"][frame]),
            sampler=sampler,
            init=init,
            strength=min(max(strength, 0.0), 1.0),
            mask=self.mask if init is not None else None,
            noise_multiplier=float(values["sampling.noise_multiplier"][frame]),
            ddim_eta=float(values["sampling.ddim_eta"][frame]),
            clip_skip=max(int(values["sampling.clip_skip"][frame]), 1),
            subseed=subseed,
            subseed_strength=float(values["sampling.subseed_strength_schedule"][frame]) if subseed >= 0 else 0.0,
            seed_resize_from=(sampling.seed_resize_from_w, sampling.seed_resize_from_h),
            tiling=settings.image.tiling,
            threshold=(sampling.dynamic_threshold, sampling.static_threshold),
            guidance=self._guidance(frame),
        )

    def _guidance(self, frame: int) -> GuidanceRequest | None:
        """This frame's guidance scales and the images the losses compare with (loaded once)."""
        scales = {name: float(self.values[f"guidance.{name}"][frame]) for name in SCALES}
        if not any(scales.values()):
            return None
        options = self.settings.guidance
        size = (self.width, self.height)
        if self._guidance_images is None:
            init = palette = None
            if options.init_mse_image:
                init = from_array(load_image(options.init_mse_image, size, field="guidance.init_mse_image")[..., :3])
            if options.colormatch_image:
                source = load_image(options.colormatch_image, size, field="guidance.colormatch_image")[..., :3]
                palette = extract_palette(from_array(source), options.colormatch_n_colors)
            self._guidance_images = (init, palette)
        init, palette = self._guidance_images
        if self.hybrid is not None and self.settings.hybrid.hybrid_use_video_as_mse_image:
            init = self.hybrid.source(frame)  # the video frame, as Deforum's hybrid option does
        text = self._prompt_text(frame)
        return GuidanceRequest(options, scales, init_image=init, palette=palette, text=text, seed=frame)

    def _move(self, image: torch.Tensor, frame: int) -> torch.Tensor:
        """The previous image carried into ``frame``: the hybrid video's motion and composites
        around the 2D/3D warp, in Deforum's order."""
        depth = self._depth(image, frame)
        image = self._follow_video(image, frame)
        composite = self.settings.hybrid.hybrid_composite if self.hybrid is not None else "None"
        if composite == "Before Motion":
            image = self.hybrid.composite(image, frame, self.values)
        image = self._warp(image, frame, depth)
        if composite == "Normal":
            image = self.hybrid.composite(image, frame, self.values)
        return image

    def _follow_video(self, image: torch.Tensor, frame: int) -> torch.Tensor:
        if self.hybrid is None:
            return image
        return self.hybrid.move(image, frame, float(self.values["hybrid.hybrid_flow_factor_schedule"][frame]))

    def _depth(self, image: torch.Tensor, frame: int) -> torch.Tensor | None:
        """3D: the depth of ``image`` for the move into ``frame`` (None: flat), saved when asked."""
        three_d = self.settings.animation.animation_mode == "3D" and self.settings.depth.use_depth_warping
        if self.depth_model is None or not three_d:
            return None
        depth = self.depth_model.predict(image, self.settings.depth.midas_weight)
        if self.settings.depth.save_depth_maps:
            from engine.depth import save_depth_map

            save_depth_map(depth, self.run.root / "depth" / f"{frame:05}.png")
        return depth

    def _warp(self, image: torch.Tensor, frame: int, depth: torch.Tensor | None = None) -> torch.Tensor:
        return move_camera(image, self.settings, lambda path: float(self.values[path][frame]), depth)

    def _write(self, index: int, image: torch.Tensor, seed: int, total: int, prompt: str = "") -> Path:
        path = self.run.frame_path(index, seed=seed, prompt=prompt or self._prompt_text(index))
        write_image(image, path, bits=self.settings.image.bit_depth_output)
        self.done += 1
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        self.emit({"type": "frame", "index": index, "path": str(path)})
        self.emit(
            {
                "type": "progress",
                "frame": index + 1,
                "total": total,
                "fps": rate,
                "eta_s": (total - index - 1) / rate if rate else None,
            }
        )
        return path

    def _prompt_text(self, index: int) -> str:
        frame = self.plan.prompts.at(min(index, self.plan.timeline.frames - 1))
        return frame.positive[0][0].plain if frame.positive else ""

    def _check_stop(self) -> None:
        if self.should_stop():
            raise Interrupted(f"stopped; resume with --resume {self.run.timestring}")

    def _init_and_mask(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        init_settings, size = self.settings.init, (self.width, self.height)
        rgba = (
            load_image(init_settings.init_image, size, field="init.init_image")
            if (init_settings.use_init and init_settings.init_image)
            else None
        )
        init = from_array(rgba[..., :3], self.device) if rgba is not None else None
        mask = None
        if init_settings.use_mask:
            if init_settings.use_alpha_as_mask:
                if rgba is None:
                    raise DriftwaveError("use_alpha_as_mask needs an init image", field="init.use_alpha_as_mask")
                gray = rgba[..., 3:4]
            else:
                gray = (
                    load_image(init_settings.mask_file, size, field="init.mask_file")[..., :3]
                    .mean(axis=2, keepdims=True)
                    .astype("uint8")
                )
            mask = from_array(gray, self.device)
            mask = (mask * init_settings.mask_brightness_adjust - 0.5) * init_settings.mask_contrast_adjust + 0.5
            mask = mask.clamp(0, 1)
            if init_settings.invert_mask:
                mask = 1 - mask
        return init, mask


def _hybrid_video(settings: Settings, loop: Loop, depth_model) -> HybridVideo:
    """The run's hybrid video: the init image when asked, else the video's chosen frames (the
    first of them the init image when asked)."""
    size = (settings.image.W, settings.image.H)
    if settings.hybrid.hybrid_use_init_image:
        still = loop.init_image
        if still is None:
            still = from_array(
                load_image(settings.init.init_image, size, field="init.init_image")[..., :3], loop.device
            )

        def source(frame: int) -> torch.Tensor:
            return still

    else:
        choice = settings.video_input.model_copy(update={"use_mask_video": False})  # masks are Video Input's
        video = open_video_input(choice, loop.run.root.parent, size, loop.device)
        source = video.frame
        if settings.hybrid.hybrid_use_first_frame_as_init_image:
            loop.init_image = video.frame(0)
    return HybridVideo(settings, source, depth_model, loop.run.root / "hybridframes")


def _grid(images: list[torch.Tensor], rows: int) -> torch.Tensor:
    columns = math.ceil(len(images) / rows)
    blank = torch.zeros_like(images[0])
    cells = images + [blank] * (rows * columns - len(images))
    lines = [torch.cat(cells[r * columns : (r + 1) * columns], dim=3) for r in range(rows)]
    return torch.cat(lines, dim=2)


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


def _write_videos(run: RunFolder, settings: Settings, plan: Plan, frames: list[Path], emit) -> Path:
    audio, offset = None, settings.audio.offset
    if settings.video.soundtrack == "audio" and settings.audio.file:
        audio = Path(settings.audio.file)
    elif settings.video.soundtrack == "init video" and settings.video_input.video_init_path:
        source = settings.video_input.video_init_path
        info = probe(source, "video_input.video_init_path")
        if info.has_audio:
            audio, offset = Path(source), settings.video_input.extract_from_frame / info.fps
        else:
            emit({"type": "log", "message": f"{Path(source).name} has no sound: the video is silent"})
    try:
        video = write_video(
            frames,
            run.root / "video.mp4",
            settings.animation.fps,
            audio=audio,
            audio_offset=offset,
            max_frames=settings.video.max_video_frames,
        )
    except DriftwaveError as error:  # the frames are done: say so, and how to get the video
        raise DriftwaveError(
            f"the frames are done but the video is not: {error.message}",
            field=error.field,
            hint=f"the frames are kept in {run.frames}; resuming run {run.timestring} makes only the video",
        ) from None
    emit({"type": "log", "message": f"wrote {video}"})
    if settings.video.save_srt:
        write_atomically(video.with_suffix(".srt"), as_srt(values_table(plan), settings.animation.fps))
    if settings.video.make_gif:
        write_gif(video, run.root / "video.gif", settings.animation.fps)
    if settings.video.delete_imgs:
        for frame in frames:
            frame.unlink(missing_ok=True)
    return video
