"""The render modes on top of the frame step: 2D/3D animation with cadence, Video Input,
Interpolation and stills, each resumable, with live edits from the TUI applied between frames.

Per diffused frame a mode takes the frame's values from the plan (``plan.frame``) and hands them
to the :class:`FrameStep`; what the modes add is the order of frames, the cadence's in-betweens,
the writing of frames and the state a resume starts from.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

from engine import coherence
from engine.backends import Backend
from engine.controlnet import control_images_for, uses_depth
from engine.errors import DriftwaveError
from engine.flow import flow_between, morph
from engine.frame_params import FrameParams
from engine.frame_step import FrameStep, load_init_and_mask, prompt_text
from engine.hybrid import HybridVideo, hybrid_in_use
from engine.images import from_array, load_image, write_image
from engine.masks import FrameMasks
from engine.outputs import RunFolder, deferred_interrupt
from engine.plan import Plan, compile_run, interpolation_positions
from engine.protocol import Event, FrameWritten, Log, Progress
from engine.seeds import seed_at
from engine.settings import Settings
from engine.video_input import VideoFrames, open_video_input


class Interrupted(DriftwaveError):
    """The run was stopped on request; its state is saved and it can be resumed."""


class Modes:
    """One run's frames: the mode's order of frames over one :class:`FrameStep`."""

    def __init__(
        self,
        settings: Settings,
        plan: Plan,
        backend: Backend,
        run: RunFolder,
        emit: Callable[[Event], None],
        should_stop: Callable[[], bool],
        take_update: Callable[[], Settings | None],
        depth_model=None,
    ) -> None:
        self.base, self.backend, self.run = settings, backend, run
        self.emit, self.should_stop, self.take_update = emit, should_stop, take_update
        self.started = time.monotonic()
        self.done = 0
        self.history = run.load_history()  # live edits: (first frame, settings from then on)
        self.depth_model = depth_model  # 3D with a depth model; None: flat depth
        self.video: VideoFrames | None = None  # Video Input: the chosen frames of the video
        self._video_reference: tuple[int, coherence.ColorReference] | None = None
        self.settings, self.plan = settings, plan
        self.init_image, self.mask = load_init_and_mask(settings, backend.device)
        self.hybrid = self._hybrid_video(settings) if hybrid_in_use(settings) else None
        self.controls = control_images_for(settings, backend, run.root.parent, depth_model)
        if settings.animation.animation_mode == "Video Input":
            size = (settings.image.W, settings.image.H)
            self.video = open_video_input(settings.video_input, run.root.parent, size)
        self.step = self._frame_step()

    def run_mode(self) -> list[Path]:
        mode = self.settings.animation.animation_mode
        runs = {"None": self.stills, "Interpolation": self.interpolation, "Video Input": self.video_input}
        return runs.get(mode, self.animation)()

    # -- settings in effect, live edits -----------------------------------------------------------

    def _follow_history(self, frame: int) -> None:
        """Take a pending live edit (from this frame on), then use the settings in effect here."""
        update = self.take_update()
        if update is not None:
            self.history = [entry for entry in self.history if entry[0] < frame] + [(frame, update)]
            self.run.save_history(self.history)
            self.emit(Log(f"edit applied from frame {frame}"))
        current = next((s for start, s in reversed(self.history) if start <= frame), self.base)
        if current is not self.settings:
            self._use(current)

    def _use(self, settings: Settings) -> None:
        """Settings from a live edit: the plan and whatever was built from what changed."""
        before = self.settings
        self.settings, self.plan = settings, compile_run(settings)
        if (settings.init, settings.image) != (before.init, before.image):
            self.init_image, self.mask = load_init_and_mask(settings, self.backend.device)
        if _depth_model_name(settings) != _depth_model_name(before):
            self.depth_model = depth_model_for(settings, self.backend.device)
        hybrid_inputs = ("hybrid", "video_input", "depth", "init")
        if self.hybrid is None or any(getattr(settings, name) != getattr(before, name) for name in hybrid_inputs):
            self.hybrid = self._hybrid_video(settings) if hybrid_in_use(settings) else None
        if (settings.controlnet, settings.image, settings.depth) != (before.controlnet, before.image, before.depth):
            self.controls = control_images_for(settings, self.backend, self.run.root.parent, self.depth_model)
        self.step = self._frame_step()

    def _frame_step(self) -> FrameStep:
        return FrameStep(
            self.settings,
            self.backend,
            init=self.init_image,
            masks=FrameMasks(
                self.settings,
                self.plan.text_schedules,
                self.backend.device,
                self.mask,
                video_mask=self.video.mask if self.video is not None else None,
            ),
            depth_model=self.depth_model,
            hybrid=self.hybrid,
            depth_maps=self.run.root / "depth",
            controls=self.controls,
        )

    def _hybrid_video(self, settings: Settings) -> HybridVideo:
        """The run's hybrid video: the init image when asked, else the video's chosen frames (the
        first of them the init image when asked)."""
        size, device = (settings.image.W, settings.image.H), self.backend.device
        if settings.hybrid.hybrid_use_init_image:
            still = self.init_image
            if still is None:
                still = from_array(load_image(settings.init.init_image, size, field="init.init_image")[..., :3], device)

            def source(frame: int) -> torch.Tensor:
                return still

        else:
            choice = settings.video_input.model_copy(update={"use_mask_video": False})  # masks are Video Input's
            source = open_video_input(choice, self.run.root.parent, size, device).frame
            if settings.hybrid.hybrid_use_first_frame_as_init_image:
                self.init_image = source(0)
        return HybridVideo(settings, source, self.depth_model, self.run.root / "hybridframes")

    # -- 2D and 3D animation ------------------------------------------------------------------------

    def animation(self) -> list[Path]:
        """Diffuse every diffusion_cadence-th frame; the frames between are cross-fades of the
        previous and the new image, both carried along the camera."""
        total = self.settings.animation.max_frames
        cadence = self.settings.coherence.diffusion_cadence
        start, older, reference = 0, None, None
        if (self.run.root / "state.json").exists():
            state, tensors = self.run.load_state(self.backend.device)
            start, older, reference = state["next_group"], tensors.get("older"), tensors.get("color_reference")
            self.emit(Log(f"resuming at frame {start * cadence}"))
        for group in range(start, math.ceil(total / cadence)):
            first = group * cadence
            self._follow_history(first)
            params = self.plan.frame(first, seed_index=group)
            if older is None:
                (image, reference), warped = self.step.first(params), None
            else:
                image, reference, warped = self.step.next(older, reference, params)
            with deferred_interrupt():
                newer = self._write_group(group, image, warped, params.seed)
                self.run.save_state(
                    {
                        "next_group": group + 1,
                        "frames_done": min(first + cadence, total),
                        "seed": self.base.sampling.seed,
                    },
                    {"older": newer, "color_reference": reference},
                )
            older = newer
            self._check_stop()
        return self.run.written_frames()

    def _write_group(self, group: int, newer: torch.Tensor, previous: torch.Tensor | None, seed: int) -> torch.Tensor:
        """The cadence group's frames; returns the newest image carried to the group's last frame.
        With optical_flow_cadence the in-betweens morph along the flow from the previous picture
        to the new one (measured once, where both are at the group's first frame) instead of
        cross-fading; the camera carries both pictures, the flow stays as measured."""
        total, cadence = self.settings.animation.max_frames, self.settings.coherence.diffusion_cadence
        first = group * cadence
        flow = self._cadence_flow(previous, newer, self.plan.frame(first, seed_index=group))
        for index in range(first, min(first + cadence, total)):
            params = self.plan.frame(index, seed_index=group)
            if index > first:  # both along the same camera, at the depth of the newer image
                depth = self.step.depth(newer, params)
                newer = self.step.carry(newer, params, depth)
                if previous is not None:
                    previous = self.step.carry(previous, params, depth)
            share = (index - first + 1) / cadence
            if previous is None or share >= 1:
                frame = newer
            elif flow is None:
                frame = previous * (1 - share) + newer * share
            else:
                frame = morph(previous, newer, share, flow * params.cadence_flow_factor)
            self._write(index, frame, seed, total)
        return newer

    def _cadence_flow(
        self, previous: torch.Tensor | None, newer: torch.Tensor, params: FrameParams
    ) -> torch.Tensor | None:
        """The flow the in-betweens morph along (None: they cross-fade), as Deforum measures it:
        2D/3D with cadence, a previous picture, and a strength above 0 at the group's frame."""
        options = self.settings.coherence
        if options.optical_flow_cadence == "None" or options.diffusion_cadence < 2:
            return None
        if previous is None or params.strength <= 0:
            return None
        return flow_between(previous, newer, options.optical_flow_cadence)

    # -- Video Input --------------------------------------------------------------------------------

    def video_input(self) -> list[Path]:
        """Each chosen video frame restyled at the strength schedule, its colours kept as set; the
        mask video's white areas keep the video frame."""
        total = self.settings.animation.max_frames
        start, reference = 0, None
        if (self.run.root / "state.json").exists():
            state, tensors = self.run.load_state(self.backend.device)
            start, reference = state["next_group"], tensors.get("color_reference")
            self.emit(Log(f"resuming at frame {start}"))
        for index in range(start, total):
            self._follow_history(index)
            params = self.plan.frame(index)
            source = self.video.frame(index)
            init = self.step.prepare_init(source, reference, params)
            overlay = self.step.masks.keep(index, params.mask, init)  # use_mask: the mask schedule's
            keep = overlay if self.settings.init.use_mask else self.video.mask(index)
            request = self.step.request(params, init, params.strength, keep)
            image, reference = self.step.after_generation(self.backend.generate(request), reference, init, overlay)
            if self.settings.coherence.color_coherence == "Video Input":
                image = self._match_video(image, index)
            if keep is not None:
                image = keep * source + (1 - keep) * image
            with deferred_interrupt():
                self._write(index, image, params.seed, total)
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

    # -- Interpolation ------------------------------------------------------------------------------

    def interpolation(self) -> list[Path]:
        """The keyed prompts' conditionings blended frame by frame, from the same noise (or the
        init image carried along the camera)."""
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
            params = self._unscheduled_seed(self.plan.frame(index), index)
            if init is not None and index > 0:
                init = self.step.warp(init, params)
            params = dataclasses.replace(params, prompt=prompts.at(index, self.plan.scope_at(index)))
            keep = self.step.first_mask() if init is not None else None
            request = self.step.request(params, init, settings.init.strength if init is not None else 0.0, keep)
            image, _ = self.step.after_generation(self.backend.generate(request), None, init, keep)
            with deferred_interrupt():
                self._write(index, image, params.seed, total)
            self._check_stop()
        return self.run.written_frames()

    # -- None (stills) ------------------------------------------------------------------------------

    def stills(self) -> list[Path]:
        batch = self.settings.batch
        prompts = self.plan.still_prompts
        images, paths, index = [], [], 0
        total = len(prompts.keys) * batch.n_batch * batch.n_samples
        for key in prompts.keys:
            for _ in range(batch.n_batch * batch.n_samples):
                params = self._unscheduled_seed(self.plan.frame(0), index)
                params = dataclasses.replace(params, prompt=prompts.at(int(key.position)))
                init = self.init_image
                keep = self.step.first_mask() if init is not None else None
                request = self.step.request(params, init, self.step.first_strength(), keep)
                image, _ = self.step.after_generation(self.backend.generate(request), None, init, keep)
                images.append(image)
                with deferred_interrupt():
                    paths.append(self._write(index, image, params.seed, total, prompt=key.scene.source))
                index += 1
        if batch.make_grid and images:
            paths.append(write_image(_grid(images, batch.grid_rows), self.run.root / "grid.png"))
        return paths

    def _unscheduled_seed(self, params: FrameParams, index: int) -> FrameParams:
        """Interpolation and stills step the seed by the image's number, without the seed schedule."""
        batch = self.settings.batch
        seed = seed_at(self.settings.sampling.seed, batch.seed_behavior, index, iter_n=batch.seed_iter_N)
        return dataclasses.replace(params, seed=seed)

    # -- writing ------------------------------------------------------------------------------------

    def _write(self, index: int, image: torch.Tensor, seed: int, total: int, prompt: str = "") -> Path:
        if not prompt:
            keyed = min(index, self.plan.timeline.frames - 1)
            prompt = prompt_text(self.plan.prompts.at(keyed, self.plan.scope_at(keyed)))
        path = self.run.frame_path(index, seed=seed, prompt=prompt)
        write_image(image, path, bits=self.settings.image.bit_depth_output)
        self.done += 1
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        self.emit(FrameWritten(index, str(path)))
        self.emit(Progress(index + 1, total, rate, (total - index - 1) / rate if rate else None))
        return path

    def _check_stop(self) -> None:
        if self.should_stop():
            raise Interrupted(f"stopped; resume with --resume {self.run.timestring}")


def depth_model_for(settings: Settings, device):
    """The depth model of a 3D run or a depth composite mask (None: flat depth)."""
    name = _depth_model_name(settings)
    if name is None:
        return None
    from engine.depth import load_depth_model

    return load_depth_model(name, device)


def _depth_model_name(settings: Settings) -> str | None:
    """The depth model these settings use, if any."""
    warping = settings.animation.animation_mode == "3D" and settings.depth.use_depth_warping
    masking = hybrid_in_use(settings) and settings.hybrid.hybrid_comp_mask_type in ("Depth", "Video Depth")
    return settings.depth.depth_model if warping or masking or uses_depth(settings) else None


def _grid(images: list[torch.Tensor], rows: int) -> torch.Tensor:
    columns = math.ceil(len(images) / rows)
    blank = torch.zeros_like(images[0])
    cells = images + [blank] * (rows * columns - len(images))
    lines = [torch.cat(cells[r * columns : (r + 1) * columns], dim=3) for r in range(rows)]
    return torch.cat(lines, dim=2)
