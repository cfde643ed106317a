"""One diffused frame, the same for the render and for live mode.

In the order of Deforum's render loop: the previous picture moved into the frame (the hybrid
video's motion and composites around the 2D/3D warp), made the next init (colour match,
grayscale, contrast, anti-blur, grain), redone when asked (optical-flow redo, diffusion redo),
generated at the frame's values, then the colour match
again (unless legacy), grayscale, the mask overlay and an After Generation composite. Everything
per frame comes in a :class:`FrameParams`; the step keeps only what it loads once.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import torch

from engine import coherence
from engine.backends import Backend, GenerationRequest
from engine.camera import move_camera
from engine.controlnet import ControlImages
from engine.errors import DriftwaveError, notify
from engine.flow import along_flow, flow_between
from engine.frame_params import FrameParams
from engine.guidance import GuidanceRequest, extract_palette
from engine.hybrid import HybridVideo
from engine.images import from_array, load_image
from engine.masks import FrameMasks, adjusted, mask_from_file
from engine.prompts import FramePrompt
from engine.seeds import redo_seed
from engine.settings import Settings


class FrameStep:
    """Makes frames for one set of settings on one backend.

    ``init``: the init image (see :func:`load_init_and_mask`); ``masks``: the inpainting and grain
    masks per frame (None: no masks);
    ``depth_model``: 3D depth warping (None: flat); ``hybrid``: the hybrid video of a run;
    ``depth_maps``: where depth maps go when the settings save them; ``controls``: the ControlNet
    units' control images.
    """

    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        *,
        init: torch.Tensor | None = None,
        masks: FrameMasks | None = None,
        depth_model=None,
        hybrid: HybridVideo | None = None,
        depth_maps: Path | None = None,
        controls: ControlImages | None = None,
    ) -> None:
        self.settings, self.backend = settings, backend
        self.init_image, self.masks = init, masks
        self.depth_model, self.hybrid, self.depth_maps = depth_model, hybrid, depth_maps
        self.controls = controls
        self._matcher: coherence.ColorReference | None = None
        self._guidance_images: tuple[torch.Tensor | None, torch.Tensor | None] | None = None

    # -- whole frames ---------------------------------------------------------------------------------

    def first(self, params: FrameParams) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The first frame, from the init image or from noise: (image, colour reference)."""
        init = self.first_init(params.seed)
        keep = self.first_mask() if init is not None else None
        image = self.generate(self.request(params, init, self.first_strength(), keep), params.frame)
        image, reference = self.after_generation(image, None, init, keep)
        return self.composite_after(image, params), reference

    def next(
        self, previous: torch.Tensor, reference: torch.Tensor | None, params: FrameParams
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The frame after ``previous``: (image, colour reference, the warped previous picture)."""
        warped = self.move(previous, params)
        init = self.prepare_init(warped, reference, params)
        keep = self.masks.keep(params.frame, params.mask, init) if self.masks is not None else None
        init = self.redo(init, warped, params, keep)
        image = self.generate(self.request(params, init, params.strength, keep), params.frame)
        image, reference = self.after_generation(image, reference, init, keep)
        return self.composite_after(image, params), reference, warped

    # -- the parts ------------------------------------------------------------------------------------

    def generate(self, request: GenerationRequest, frame: int) -> torch.Tensor:
        """The frame's generation; one that comes out blank (all black, or not a number) is
        rerolled on the next seeds, stops the run, or is kept, as reroll_blank_frames says."""
        image = self.backend.generate(request)
        options = self.settings.sampling
        if options.reroll_blank_frames == "ignore" or not is_blank(image):
            return image
        hint = "reroll_blank_frames = reroll tries the next seeds; float32 weights (model.dtype) avoid most of these"
        if options.reroll_blank_frames == "interrupt":
            field = "sampling.reroll_blank_frames"
            raise DriftwaveError(f"frame {frame} came out blank: stopped", field=field, hint=hint)
        for attempt in range(1, options.reroll_patience + 1):
            image = self.backend.generate(dataclasses.replace(request, seed=request.seed + attempt))
            if not is_blank(image):
                notify(f"frame {frame} came out blank: rerolled on seed {request.seed + attempt}")
                return image
        raise DriftwaveError(
            f"frame {frame} came out blank on seeds {request.seed} to {request.seed + options.reroll_patience}",
            field="sampling.reroll_patience",
            hint="raise reroll_patience, or use float32 weights (model.dtype = float32)",
        )

    def first_init(self, seed: int) -> torch.Tensor | None:
        """The init image, with the notebook's init noise when asked."""
        init, options = self.init_image, self.settings.init
        if init is not None and options.add_init_noise and options.init_noise > 0:
            init = coherence.add_white_noise(init, options.init_noise * 2, seed)
        return init

    def first_mask(self) -> torch.Tensor | None:
        """The inpainting mask of a generation from the init image (frame 0, stills)."""
        return self.masks.first() if self.masks is not None else None

    def first_strength(self) -> float:
        options = self.settings.init
        if self.init_image is not None:
            return options.strength
        return 0.0 if options.strength_0_no_init else options.strength

    def move(self, image: torch.Tensor, params: FrameParams) -> torch.Tensor:
        """The previous image carried into the frame: the hybrid video's motion and composites
        around the 2D/3D warp, in Deforum's order."""
        depth = self.depth(image, params)
        image = self.follow_video(image, params)
        composite = self.settings.hybrid.hybrid_composite if self.hybrid is not None else "None"
        if composite == "Before Motion":
            image = self.hybrid.composite(image, params.frame, params.hybrid)
        image = self.warp(image, params, depth)
        if composite == "Normal":
            image = self.hybrid.composite(image, params.frame, params.hybrid)
        return image

    def carry(self, image: torch.Tensor, params: FrameParams, depth: torch.Tensor | None) -> torch.Tensor:
        """An in-between frame of a cadence group: along the video's motion and the camera."""
        return self.warp(self.follow_video(image, params), params, depth)

    def warp(self, image: torch.Tensor, params: FrameParams, depth: torch.Tensor | None = None) -> torch.Tensor:
        return move_camera(image, self.settings, params.motion, depth)

    def follow_video(self, image: torch.Tensor, params: FrameParams) -> torch.Tensor:
        if self.hybrid is None:
            return image
        return self.hybrid.move(image, params.frame, params.hybrid.flow_factor)

    def depth(self, image: torch.Tensor, params: FrameParams) -> torch.Tensor | None:
        """3D: the depth of ``image`` for the move into the frame (None: flat), saved when asked."""
        options = self.settings.depth
        if self.depth_model is None or self.settings.animation.animation_mode != "3D" or not options.use_depth_warping:
            return None
        depth = self.depth_model.predict(image, options.midas_weight)
        if options.save_depth_maps and self.depth_maps is not None:
            from engine.depth import save_depth_map

            save_depth_map(depth, self.depth_maps / f"{params.frame:05}.png")
        return depth

    def prepare_init(self, warped: torch.Tensor, reference: torch.Tensor | None, params: FrameParams) -> torch.Tensor:
        """The warped frame made the next init, in Deforum's order: colour match, grayscale,
        contrast, anti-blur, grain (where the frame's grain mask says)."""
        image = self.match(warped, reference)
        if self.settings.coherence.color_force_grayscale:
            image = coherence.grayscale(image)
        image = coherence.apply_contrast(image, params.contrast)
        sharp = params.unsharp
        image = coherence.unsharp_mask(image, sharp.kernel, sharp.sigma, sharp.amount, sharp.threshold)
        grain = self.settings.coherence
        where = None
        if self.masks is not None and params.noise > 0:
            where = self.masks.grain(params.frame, params.mask, params.noise_mask, image)
        return coherence.add_noise(
            image,
            params.noise,
            params.seed,
            kind=grain.noise_type,
            perlin_cells=(grain.perlin_w, grain.perlin_h),
            octaves=grain.perlin_octaves,
            persistence=grain.perlin_persistence,
            mask=where,
        )

    def redo(
        self, init: torch.Tensor, warped: torch.Tensor, params: FrameParams, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Deforum's redos before the generation, from ``init``: with optical_flow_redo_generation
        a trial generation, moved along its flow from the ``warped`` previous picture by the redo
        flow factor, is the init; then each of diffusion_redo generations is the next one's init. The throwaway
        generations' seeds are drawn from the frame's (Deforum draws random ones)."""
        options = self.settings.coherence
        if params.strength <= 0:
            return init
        attempts = iter(range(1, 2 + options.diffusion_redo))
        if options.optical_flow_redo_generation != "None":
            trial = self.backend.generate(self._throwaway(params, init, next(attempts), keep))
            flow = flow_between(warped, trial, options.optical_flow_redo_generation)
            init = along_flow(trial, flow, params.redo_flow_factor)
        for _ in range(options.diffusion_redo):
            init = self.backend.generate(self._throwaway(params, init, next(attempts), keep))
        return init

    def _throwaway(self, params: FrameParams, init: torch.Tensor, attempt: int, keep) -> GenerationRequest:
        again = dataclasses.replace(params, seed=redo_seed(params.seed, attempt))
        return self.request(again, init, params.strength, keep)

    def after_generation(
        self,
        image: torch.Tensor,
        reference: torch.Tensor | None,
        init: torch.Tensor | None,
        keep: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Deforum's order after a generation: the colour match again (unless legacy_colormatch),
        grayscale, the overlay of ``init`` where the mask ``keep`` is light. Without a reference
        yet, this image (or the coherence image) becomes it."""
        options = self.settings.coherence
        if reference is None:
            reference = image if options.color_coherence in ("LAB", "HSV", "RGB") else self._coherence_image
        elif not options.legacy_colormatch:
            image = self.match(image, reference)
        if options.color_force_grayscale:
            image = coherence.grayscale(image)
        if keep is not None and self.settings.init.overlay_mask and init is not None:
            keep = coherence.gaussian_blur(keep, self.settings.init.mask_overlay_blur * 2 + 1, 0)
            image = keep * init + (1 - keep) * image
        return image, reference

    def composite_after(self, image: torch.Tensor, params: FrameParams) -> torch.Tensor:
        if self.hybrid is not None and self.settings.hybrid.hybrid_composite == "After Generation":
            return self.hybrid.composite(image, params.frame, params.hybrid)
        return image

    def match(self, image: torch.Tensor, reference: torch.Tensor | None) -> torch.Tensor:
        """``image``'s colours matched to ``reference`` (measured once while it stays the same)."""
        space = self.settings.coherence.color_coherence
        if reference is None or space in ("None", "Video Input"):
            return image
        if self._matcher is None or self._matcher.image is not reference:
            self._matcher = coherence.ColorReference(reference, "RGB" if space == "Image" else space)
        return self._matcher.match(image)

    def request(
        self, params: FrameParams, init: torch.Tensor | None, strength: float, keep: torch.Tensor | None = None
    ) -> GenerationRequest:
        """The generation of ``params`` from ``init`` (None: from noise), kept where ``keep`` is light."""
        settings = self.settings
        sampling = settings.sampling
        return GenerationRequest(
            prompt=params.prompt,
            seed=params.seed,
            width=settings.image.W,
            height=settings.image.H,
            steps=params.steps,
            cfg=params.cfg,
            sampler=params.sampler,
            init=init,
            strength=strength,
            mask=keep if init is not None else None,
            noise_multiplier=params.noise_multiplier,
            ddim_eta=params.ddim_eta,
            clip_skip=params.clip_skip,
            subseed=params.subseed,
            subseed_strength=params.subseed_strength,
            seed_resize_from=(sampling.seed_resize_from_w, sampling.seed_resize_from_h),
            tiling=settings.image.tiling,
            threshold=(sampling.dynamic_threshold, sampling.static_threshold),
            guidance=self._guidance(params),
            controls=self.controls.inputs(params, init) if self.controls is not None else (),
        )

    def _guidance(self, params: FrameParams) -> GuidanceRequest | None:
        """The frame's guidance scales and the images the losses compare with (loaded once)."""
        if not any(params.guidance.values()):
            return None
        options = self.settings.guidance
        if self._guidance_images is None:
            size, init, palette = (self.settings.image.W, self.settings.image.H), None, None
            if options.init_mse_image:
                init = from_array(load_image(options.init_mse_image, size, field="guidance.init_mse_image")[..., :3])
            if options.colormatch_image:
                source = load_image(options.colormatch_image, size, field="guidance.colormatch_image")[..., :3]
                palette = extract_palette(from_array(source), options.colormatch_n_colors)
            self._guidance_images = (init, palette)
        init, palette = self._guidance_images
        if self.hybrid is not None and self.settings.hybrid.hybrid_use_video_as_mse_image:
            init = self.hybrid.source(params.frame)  # the video frame, as Deforum's hybrid option does
        return GuidanceRequest(
            options,
            params.guidance,
            init_image=init,
            palette=palette,
            text=prompt_text(params.prompt),
            seed=params.frame,
        )

    @functools.cached_property
    def _coherence_image(self) -> torch.Tensor | None:
        """color_coherence = Image: its picture, read once."""
        options, size = self.settings.coherence, (self.settings.image.W, self.settings.image.H)
        if options.color_coherence == "Image" and options.color_coherence_image_path:
            field = "coherence.color_coherence_image_path"
            picture = load_image(options.color_coherence_image_path, size, field=field)
            return from_array(picture[..., :3], self.backend.device)
        return None


def is_blank(image: torch.Tensor) -> bool:
    """All black (Deforum's ``not image.getbbox()``) or not a number (a VAE overflow)."""
    return bool(image.max() <= 0 or not torch.isfinite(image).all())


def prompt_text(prompt: FramePrompt) -> str:
    """The frame's first positive prompt as plain text (file names, CLIP guidance)."""
    return prompt.positive[0][0].plain if prompt.positive else ""


def load_init_and_mask(settings: Settings, device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The init image and the mask file (or the init's alpha) adjusted as the settings say, before
    invert_mask (``{init_mask}`` of the mask schedules)."""
    options, size = settings.init, (settings.image.W, settings.image.H)
    rgba = (
        load_image(options.init_image, size, field="init.init_image")
        if options.use_init and options.init_image
        else None
    )
    init = from_array(rgba[..., :3], device) if rgba is not None else None
    if not options.use_mask:
        return init, None
    if options.use_alpha_as_mask:
        if rgba is None:
            raise DriftwaveError("use_alpha_as_mask needs an init image", field="init.use_alpha_as_mask")
        return init, adjusted(from_array(rgba[..., 3:4], device), options)
    return init, mask_from_file(settings, options.mask_file, device, field="init.mask_file")
