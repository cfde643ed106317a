"""Every setting of a Driftwave run: one pydantic model, the single source of truth.

Groups follow the seeds' sections (animation, motion, sampling, coherence, ...). Field names
are Deforum's, unique across groups, so ``--set zoom=...`` and the Deforum import find a field
by its name alone. Defaults are those Deforum's A1111 extension ships. Schedule fields hold
schedule text (see :mod:`engine.schedule`); their json schema carries ``kind = "schedule"``.
Presets (TOML) live in :mod:`engine.presets`; expressions are checked in :mod:`engine.plan`.
"""

from __future__ import annotations

import keyword
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from engine.errors import notify
from engine.expression import CONSTANTS, FUNCTIONS
from engine.samplers import SAMPLERS, canonical_sampler
from engine.schedule import FRAME_VARIABLES, TIMELINE_VARIABLES


def _schedule_text(value: Any) -> Any:
    """A schedule may be written as a bare number in TOML: ``zoom = 1.02``."""
    if isinstance(value, bool):
        return value  # let the str check reject it
    return repr(value) if isinstance(value, int | float) else value


ScheduleText = Annotated[str, BeforeValidator(_schedule_text)]


def schedule(default: str, description: str) -> Any:
    """A numeric schedule field (tweened per frame)."""
    return Field(default, description=description, json_schema_extra={"kind": "schedule"})


def text_schedule(default: str, description: str) -> Any:
    """A schedule of quoted names (sampler, checkpoint), held from keyframe to keyframe."""
    return Field(default, description=description, json_schema_extra={"kind": "text_schedule"})


def path(default: str, description: str) -> Any:
    """A file or folder; relative paths in a preset are relative to the preset's folder."""
    return Field(default, description=description, json_schema_extra={"kind": "path"})


def without_effect(default: Any, description: str, reason: str, *, kind: str | None = None, **options: Any) -> Any:
    """A Deforum setting that is read but does nothing here: marked in the schema, shown by
    ``main.py settings`` and listed by the importer as not supported."""
    extra = {"no_effect": reason, **({"kind": kind} if kind else {})}
    return Field(default, description=f"{description} [no effect here: {reason}]", json_schema_extra=extra, **options)


def literal_choices(annotation: Any) -> tuple | None:
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    return None


class Group(BaseModel):
    """A section of the settings (a TOML table). Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _match_choices(cls, data: Any) -> Any:
        """Accept choices in any letter case: ``"lab"`` is ``"LAB"``."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name, value in data.items():
            field = cls.model_fields.get(name)
            choices = literal_choices(field.annotation) if field else None
            if choices and isinstance(value, str):
                folded = {str(choice).casefold(): choice for choice in choices}
                data[name] = folded.get(value.strip().casefold(), value)
        return data


class AnimationSettings(Group):
    animation_mode: Literal["None", "2D", "3D", "Video Input", "Interpolation"] = Field(
        "2D",
        description="None renders stills; 2D/3D move the canvas; Video Input restyles a video; "
        "Interpolation blends between the keyed prompts",
    )
    max_frames: int = Field(120, ge=1, le=1_000_000, description="number of frames to render (2D/3D)")
    fps: float = Field(15, gt=0, le=240, description="frames per second of the video; `s` and `2.5s` keyframes use it")
    border: Literal["replicate", "wrap"] = Field(
        "replicate",
        description="how 2D motion fills pixels that come in from the edge: replicate the edge or wrap around",
    )
    blend: Literal["tween", "hold"] = Field(
        "tween",
        description="tween: expressions cross-fade between keyframes; hold: each expression alone until "
        "the next keyframe, as Deforum renders (set by the Deforum import)",
    )


class MotionSettings(Group):
    angle: ScheduleText = schedule("0:(0)", "2D: degrees per frame; positive turns the image counter-clockwise")
    zoom: ScheduleText = schedule(
        "0:(1.0025+0.002*sin(1.25*3.14*t/30))", "2D: scale per frame; 1 is still, above 1 zooms in"
    )
    translation_x: ScheduleText = schedule("0:(0)", "pixels per frame left/right (2D) or camera units (3D)")
    translation_y: ScheduleText = schedule("0:(0)", "pixels per frame up/down (2D) or camera units (3D)")
    translation_z: ScheduleText = schedule("0:(1.75)", "3D: camera units per frame towards the view (speed set by fov)")
    transform_center_x: ScheduleText = schedule("0:(0.5)", "2D: x of the rotation/zoom centre, 0..1 of the width")
    transform_center_y: ScheduleText = schedule("0:(0.5)", "2D: y of the rotation/zoom centre, 0..1 of the height")
    rotation_3d_x: ScheduleText = schedule("0:(0)", "3D: degrees per frame of pitch (tilt up/down)")
    rotation_3d_y: ScheduleText = schedule("0:(0)", "3D: degrees per frame of yaw (pan left/right)")
    rotation_3d_z: ScheduleText = schedule("0:(0)", "3D: degrees per frame of roll")
    enable_perspective_flip: bool = Field(False, description="2D: fake 3D with a perspective warp (theta/phi/gamma/fv)")
    perspective_flip_theta: ScheduleText = schedule("0:(0)", "perspective flip: roll angle")
    perspective_flip_phi: ScheduleText = schedule("0:(0)", "perspective flip: tilt angle")
    perspective_flip_gamma: ScheduleText = schedule("0:(0)", "perspective flip: pan angle")
    perspective_flip_fv: ScheduleText = schedule("0:(53)", "perspective flip: vanishing point (30-160)")
    noise_schedule: ScheduleText = schedule("0:(0.065)", "amount of grain added each frame for diversity")
    strength_schedule: ScheduleText = schedule(
        "0:(0.65)", "how much of the previous frame is kept (0..1); steps run = steps - strength*steps"
    )
    contrast_schedule: ScheduleText = schedule("0:(1.0)", "contrast applied each frame; 1 is neutral")


class SamplingSettings(Group):
    seed: int = Field(-1, ge=-1, lt=2**32, description="starting seed; -1 picks one and records it")
    sampler: str = Field("euler_a", description=f"sampler: one of {', '.join(SAMPLERS)}")
    steps: int = Field(25, ge=1, le=1000, description="diffusion steps of a full frame")
    scale: ScheduleText = schedule("0:(7)", "CFG scale: how closely the image follows the prompt (5-15 usual)")
    ddim_eta: ScheduleText = schedule("0:(0)", "ddim sampler noise (eta); 0 is deterministic")
    ancestral_eta: ScheduleText = without_effect(
        "0:(1)",
        "noise of ancestral samplers (euler_a, dpm2_a, ...)",
        "diffusers' ancestral schedulers take no eta",
        kind="schedule",
    )
    noise_multiplier: ScheduleText = schedule("0:(1.05)", "multiplier of the noise added to img2img latents")
    clip_skip: ScheduleText = schedule("0:(1)", "text-encoder layers to skip from the end (1 = none)")
    dynamic_threshold: float = Field(0.0, ge=0, description="dynamic thresholding percentile (0 = off)")
    static_threshold: float = Field(0.0, ge=0, description="static threshold on the predicted image (0 = off)")
    enable_steps_scheduling: bool = Field(False, description="take the steps of each frame from steps_schedule")
    steps_schedule: ScheduleText = schedule("0:(25)", "steps per frame when enable_steps_scheduling is on")
    enable_sampler_scheduling: bool = Field(False, description="switch samplers per frame with sampler_schedule")
    sampler_schedule: str = text_schedule('0:("euler_a")', 'samplers by frame, e.g. 0:("euler_a"), 30:("dpmpp_2m")')
    enable_checkpoint_scheduling: bool = without_effect(
        False, "switch models per frame with checkpoint_schedule", "one model per run"
    )
    checkpoint_schedule: str = without_effect(
        '0:("model1.safetensors")', "models by frame (paths or hub ids)", "one model per run", kind="text_schedule"
    )
    enable_subseed_scheduling: bool = Field(False, description="mix a second seed in with the subseed schedules")
    subseed_schedule: ScheduleText = schedule("0:(1)", "the second seed, per frame")
    subseed_strength_schedule: ScheduleText = schedule("0:(0)", "how much of the second seed's noise is mixed in")
    seed_resize_from_w: int = Field(
        0,
        ge=0,
        description="make the seed's noise at this width and paste it centred, so a seed keeps its "
        "composition at another size (0 = off; needs seed_resize_from_h too)",
    )
    seed_resize_from_h: int = Field(
        0, ge=0, description="make the seed's noise at this height (0 = off; needs seed_resize_from_w too)"
    )
    reroll_blank_frames: Literal["reroll", "interrupt", "ignore"] = Field(
        "ignore", description="a frame that comes out all black: generate it again on the next seeds, stop, or keep it"
    )
    reroll_patience: int = Field(10, ge=1, le=1000, description="how many next seeds a blank frame is rerolled on")

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, value: str) -> str:
        name = canonical_sampler(value)
        if name is None:
            raise ValueError(f"unknown sampler {value!r}; use one of {', '.join(SAMPLERS)}")
        return name


class AntiBlurSettings(Group):
    kernel_schedule: ScheduleText = schedule("0:(5)", "unsharp mask kernel size (odd pixels)")
    sigma_schedule: ScheduleText = schedule("0:(1)", "unsharp mask blur sigma")
    amount_schedule: ScheduleText = schedule("0:(0.1)", "unsharp mask amount (0 = off)")
    threshold_schedule: ScheduleText = schedule("0:(0)", "unsharp mask threshold")


class CoherenceSettings(Group):
    color_coherence: Literal["None", "HSV", "LAB", "RGB", "Video Input", "Image"] = Field(
        "LAB", description="match colors to frame 0 in this space (LAB is a good default), the video, or an image"
    )
    color_coherence_image_path: str = path("", "image whose colors to match when color_coherence is Image")
    color_coherence_video_every_N_frames: int = Field(1, ge=1, description="Video Input: re-take colors every N frames")
    color_force_grayscale: bool = Field(False, description="render every frame in grayscale")
    legacy_colormatch: bool = Field(
        False, description="match colours on the warped frame only, not on the generated image as well (Deforum's)"
    )
    diffusion_cadence: int = Field(2, ge=1, le=50, description="diffuse every N-th frame; between them warp and blend")
    optical_flow_cadence: Literal["None", "RAFT", "DIS Medium", "DIS Fine", "Farneback"] = Field(
        "None", description="cadence: the in-between frames morph along the optical flow between the pictures"
    )
    cadence_flow_factor_schedule: ScheduleText = schedule("0:(1)", "how far along the measured flow in-betweens move")
    optical_flow_redo_generation: Literal["None", "RAFT", "DIS Medium", "DIS Fine", "Farneback"] = Field(
        "None",
        description="generate twice: a trial, then the trial moved along its flow from the init is the init (slower)",
    )
    redo_flow_factor_schedule: ScheduleText = schedule("0:(1)", "how far along the flow the redo moves the trial")
    use_noise_mask: bool = Field(False, description="grain only where noise_mask_schedule's mask is light")
    noise_mask_schedule: str = text_schedule(
        '0: ("{init_mask}")', "where the grain goes (use_noise_mask), written as mask_schedule"
    )
    diffusion_redo: int = Field(
        0, ge=0, le=50, description="generate this many times before the frame, each the next one's init (slower)"
    )
    noise_type: Literal["uniform", "perlin"] = Field("perlin", description="grain added per frame: uniform or perlin")
    perlin_w: float = Field(8, gt=0, le=64, description="perlin noise cells down (Deforum's name; it passes it first)")
    perlin_h: float = Field(8, gt=0, le=64, description="perlin noise cells across (Deforum's name)")
    perlin_octaves: int = Field(4, ge=1, le=7, description="perlin noise octaves")
    perlin_persistence: float = Field(0.5, ge=0, le=1, description="perlin noise persistence between octaves")

    @model_validator(mode="before")
    @classmethod
    def _deforum_names(cls, data: Any) -> Any:
        """Deforum's older spellings: ``Match Frame 0 LAB`` is ``LAB``."""
        if isinstance(data, dict) and isinstance(data.get("color_coherence"), str):
            value = data["color_coherence"]
            if value.lower().startswith("match frame 0 "):
                data = {**data, "color_coherence": value[len("match frame 0 ") :]}
        return data


class DepthSettings(Group):
    use_depth_warping: bool = Field(True, description="3D: warp with a depth map (off: flat depth)")
    depth_model: str = path(
        "depth-anything/Depth-Anything-V2-Small-hf", "depth checkpoint (hub id or folder), or 'flat'"
    )
    midas_weight: float = Field(0.2, ge=-1, le=1, description="blend of model depth with a flat plane (-1..1)")
    fov_schedule: ScheduleText = schedule("0:(70)", "3D field of view in degrees; lower = more depth")
    near_schedule: ScheduleText = schedule("0:(200)", "3D near plane (before far; does not change the picture)")
    far_schedule: ScheduleText = schedule("0:(10000)", "3D far plane (after near; does not change the picture)")
    aspect_ratio_schedule: ScheduleText = schedule("0:(1)", "aspect ratio used for the 3D projection")
    aspect_ratio_use_old_formula: bool = Field(False, description="use width/height as the aspect ratio (old Deforum)")
    padding_mode: Literal["border", "reflection", "zeros"] = Field(
        "border", description="pixels coming into view: edge pixels, mirrored, or black"
    )
    sampling_mode: Literal["bicubic", "bilinear", "nearest"] = Field("bicubic", description="3D resampling filter")
    save_depth_maps: bool = Field(False, description="write 16-bit depth PNGs beside the frames")


class VideoInputSettings(Group):
    video_init_path: str = path("", "video to restyle (Video Input mode) or drive hybrid video")
    extract_nth_frame: int = Field(1, ge=1, le=100_000, description="use every N-th frame of the video")
    extract_from_frame: int = Field(0, ge=0, description="first video frame to use")
    extract_to_frame: int = Field(-1, ge=-1, description="last video frame to use (-1 = to the end)")
    overwrite_extracted_frames: bool = Field(False, description="re-extract the frames on every run")
    use_mask_video: bool = Field(False, description="mask each frame with the mask video (white = keep)")
    video_mask_path: str = path("", "the mask video")


class HybridSettings(Group):
    hybrid_generate_inputframes: bool = Field(
        False,
        description="Deforum's switch to extract the video's frames (extracted, or re-used, whenever hybrid is on)",
    )
    hybrid_use_first_frame_as_init_image: bool = Field(True, description="start from the video's first frame")
    hybrid_use_init_image: bool = Field(False, description="use the init image as the hybrid video")
    hybrid_motion: Literal["None", "Optical Flow", "Perspective", "Affine"] = Field(
        "None", description="follow the video's camera motion"
    )
    hybrid_motion_use_prev_img: bool = Field(False, description="measure motion against the previous rendered frame")
    hybrid_flow_method: Literal["RAFT", "DIS Medium", "DIS Fine", "Farneback", "DenseRLOF", "SF"] = Field(
        "DIS Medium", description="optical flow method: RAFT (torchvision's model) or OpenCV's"
    )
    hybrid_flow_consistency: bool = Field(False, description="mask out inconsistent optical flow")
    hybrid_consistency_blur: int = Field(2, ge=0, le=16, description="blur of the flow consistency mask")
    hybrid_composite: Literal["None", "Normal", "Before Motion", "After Generation"] = Field(
        "None", description="composite the video frame into the render"
    )
    hybrid_comp_mask_type: Literal["None", "Depth", "Video Depth", "Blend", "Difference"] = Field(
        "None", description="mask for the composite"
    )
    hybrid_comp_mask_inverse: bool = Field(False, description="invert the composite mask")
    hybrid_comp_mask_equalize: Literal["None", "Before", "After", "Both"] = Field(
        "None", description="equalize the composite mask"
    )
    hybrid_comp_mask_auto_contrast: bool = Field(False, description="auto-contrast the composite mask")
    hybrid_comp_save_extra_frames: bool = Field(False, description="save the hybrid intermediate frames")
    hybrid_use_video_as_mse_image: bool = Field(False, description="use the video frame as init_mse_image")
    hybrid_comp_alpha_schedule: ScheduleText = schedule("0:(0.5)", "composite alpha")
    hybrid_comp_mask_blend_alpha_schedule: ScheduleText = schedule("0:(0.5)", "blend mask alpha")
    hybrid_comp_mask_contrast_schedule: ScheduleText = schedule("0:(1)", "composite mask contrast")
    hybrid_comp_mask_auto_contrast_cutoff_high_schedule: ScheduleText = schedule("0:(100)", "auto-contrast high cutoff")
    hybrid_comp_mask_auto_contrast_cutoff_low_schedule: ScheduleText = schedule("0:(0)", "auto-contrast low cutoff")
    hybrid_flow_factor_schedule: ScheduleText = schedule("0:(1)", "how much of the measured flow is applied")

    @model_validator(mode="before")
    @classmethod
    def _boolean_composite(cls, data: Any) -> Any:
        """Old Deforum files hold hybrid_composite as a boolean."""
        if isinstance(data, dict) and isinstance(data.get("hybrid_composite"), bool):
            data = {**data, "hybrid_composite": "Normal" if data["hybrid_composite"] else "None"}
        return data


class InterpolationSettings(Group):
    interpolate_key_frames: bool = Field(False, description="Interpolation: use the prompts' frame numbers as spacing")
    interpolate_x_frames: int = Field(
        4, ge=0, le=10_000, description="Interpolation: frames between prompts when not keyed"
    )


class ResumeSettings(Group):
    resume_from_timestring: bool = Field(False, description="continue the run named by resume_timestring")
    resume_timestring: str = Field("", description="timestring (yyyymmddhhmmss) of the run to continue")


class ImageSettings(Group):
    W: int = Field(512, ge=64, le=8192, description="width in pixels (multiple of 8)")
    H: int = Field(512, ge=64, le=8192, description="height in pixels (multiple of 8)")
    bit_depth_output: Literal[8, 16, 32] = Field(8, description="bits per channel of saved frames")
    tiling: bool = Field(False, description="seamless tiling: the image wraps around at its edges, as a texture")

    @field_validator("W", "H")
    @classmethod
    def _multiple_of_8(cls, value: int, info: Any) -> int:
        """Whole latents, rounded down as Deforum does (webui_sd_pipeline.py: ``x - x % 8``)."""
        rounded = max(64, value - value % 8)
        if rounded != value:
            notify(f"image.{info.field_name} {value} is not a multiple of 8: using {rounded}")
        return rounded


class SaveSettings(Group):
    save_samples: bool = without_effect(True, "write the frames", "frames are always written (resume needs them)")
    save_settings: bool = without_effect(
        True, "write settings.toml beside the frames", "always written (resume needs it)"
    )
    display_samples: bool = without_effect(True, "show frames as they render", "the TUI always shows the newest frame")
    save_sample_per_step: bool = without_effect(False, "write an image at every diffusion step", "not implemented yet")
    show_sample_per_step: bool = without_effect(False, "show an image at every diffusion step", "not implemented yet")


class BatchSettings(Group):
    n_batch: int = Field(1, ge=1, le=10_000, description="None mode: batches per prompt")
    n_samples: int = Field(1, ge=1, le=64, description="None mode: images per batch")
    batch_name: str = Field("driftwave", min_length=1, description="folder name of the run under outdir")
    filename_format: str = Field(
        "{index:06d}.png", description="frame file names: {index}, {timestring}, {seed}, {prompt} placeholders"
    )
    seed_behavior: Literal["iter", "fixed", "random", "ladder", "alternate", "schedule"] = Field(
        "iter", description="how the seed changes per frame: iter +1, fixed, random, ladder, alternate, schedule"
    )
    seed_iter_N: int = Field(1, ge=1, le=1_000_000, description="iter: frames each seed is kept for")
    seed_schedule: ScheduleText = schedule(
        "0:(seed)",
        "seed per frame when seed_behavior is schedule: `seed` is the starting seed, -1 a random one; "
        'e.g. 0:(seed), 1:(-1), "max_f-1":(seed) for a loop',
    )
    make_grid: bool = Field(False, description="None mode: also save a grid of the images")
    grid_rows: int = Field(2, ge=1, le=64, description="rows of that grid")
    outdir: str = Field("outputs", description="where runs are written: <outdir>/<batch_name>/<timestring>/")


class InitSettings(Group):
    use_init: bool = Field(False, description="start from init_image")
    strength: float = Field(0.8, ge=0, le=1, description="how much of the init image is kept (0..1)")
    strength_0_no_init: bool = Field(True, description="frame 0 without init: ignore strength")
    init_image: str = path("", "init image path")
    add_init_noise: bool = Field(False, description="add noise to the init image")
    init_noise: float = Field(0.01, ge=0, description="that noise's amount")
    use_mask: bool = Field(False, description="diffuse only where the mask is dark")
    use_alpha_as_mask: bool = Field(False, description="take the mask from the init image's alpha")
    mask_file: str = path("", "mask image path (light = keep, dark = diffuse)")
    invert_mask: bool = Field(False, description="invert the mask")
    mask_brightness_adjust: float = Field(1.0, ge=0, description="mask brightness factor")
    mask_contrast_adjust: float = Field(1.0, ge=0, description="mask contrast factor")
    overlay_mask: bool = Field(True, description="paste the kept area back after diffusion")
    mask_overlay_blur: int = Field(4, ge=0, le=64, description="blur of the overlay mask edge")
    mask_schedule: str = text_schedule(
        '0: ("{init_mask}")',
        "the mask from frame 1 on (use_mask): {init_mask}, {video_mask}, {human_mask}, {everywhere}, "
        "[file.png], <words> joined by ! & | ^ \\ and ( )",
    )
    word_mask_model: str = Field(
        "CIDAS/clipseg-rd64-refined", description="the CLIPSeg model (hub id or folder) of <words> and {human_mask}"
    )


GUIDANCE_SCALES = (
    "mean_scale",
    "var_scale",
    "exposure_scale",
    "colormatch_scale",
    "init_mse_scale",
    "blue_scale",
    "clip_scale",
    "aesthetics_scale",
)  # the gradient-conditioning terms, each a schedule of GuidanceSettings


class GuidanceSettings(Group):
    mean_scale: ScheduleText = schedule("0", "push pixels towards mid grey")
    var_scale: ScheduleText = schedule("0", "push pixels towards lower variance")
    exposure_scale: ScheduleText = schedule("0", "push the mean towards exposure_target")
    exposure_target: float = Field(0.5, ge=-1, le=1, description="target mean for exposure_scale (-1 dark .. 1 bright)")
    colormatch_scale: ScheduleText = schedule("0", "push towards the palette of colormatch_image")
    colormatch_image: str = path("", "image to take the palette from")
    colormatch_n_colors: int = Field(4, ge=1, le=64, description="colors in that palette")
    ignore_sat_weight: float = Field(0.0, ge=0, description="ignore saturation in colormatch by this much")
    clip_name: str = Field("openai/clip-vit-large-patch14", description="CLIP checkpoint for clip/aesthetics guidance")
    clip_scale: ScheduleText = schedule("0", "CLIP guidance towards the prompt")
    aesthetics_scale: ScheduleText = schedule("0", "guidance by an aesthetics predictor")
    aesthetics_model: str = path("", "path of the aesthetics predictor head")
    cutn: int = Field(1, ge=1, le=64, description="CLIP cutouts per step")
    cut_pow: float = Field(0.0001, gt=0, description="cutout size power (small = large cutouts)")
    init_mse_scale: ScheduleText = schedule("0", "pull each pixel towards init_mse_image")
    init_mse_image: str = path("", "image for init_mse_scale")
    blue_scale: ScheduleText = schedule("0", "push the blue channel down")
    gradient_wrt: Literal["x", "x0_pred"] = Field(
        "x0_pred", description="x0_pred: fast, on the denoised image; x: through the UNet"
    )
    gradient_add_to: Literal["cond", "uncond", "both"] = Field("both", description="where the gradient is added")
    decode_method: Literal["autoencoder", "linear"] = Field(
        "linear", description="how latents are decoded for the losses"
    )
    grad_threshold_type: Literal["dynamic", "static", "mean", "schedule"] = Field(
        "dynamic", description="how the gradient is clamped"
    )
    clamp_grad_threshold: float = Field(0.2, gt=0, description="clamp threshold (dynamic/static/mean)")
    clamp_start: float = Field(0.2, gt=0, description="schedule clamp: threshold at the first step")
    clamp_stop: float = Field(0.01, gt=0, description="schedule clamp: threshold at the last step")
    grad_inject_timing: int | list[float] | Literal["none"] = Field(
        default_factory=lambda: [float(step) for step in range(1, 10)],
        description="steps that get the gradient: every N-th (int), step fractions (0..1), step numbers, "
        "or 'none' (all)",
    )
    cond_uncond_sync: bool = Field(True, description="run cond and uncond together (faster, more memory)")
    skip_unloadable_guidance: bool = Field(
        False, description="when the CLIP model or aesthetics head cannot be loaded, render without that term"
    )


NCNN_UPSCALE_MODELS = ("realesr-animevideov3", "realesrgan-x4plus", "realesrgan-x4plus-anime")
"""The realesrgan-ncnn models Deforum's r_upscale_model names: not files, upscaled with Lanczos here."""


class VideoOutputSettings(Group):
    skip_video_creation: bool = Field(False, description="write frames only, no video")
    make_gif: bool = Field(False, description="also write an animated GIF")
    max_video_frames: int = Field(0, ge=0, description="frames in the video (0 = all)")
    delete_imgs: bool = Field(False, description="delete the frames once the video is written")
    soundtrack: Literal["audio", "init video", "none"] = Field(
        "audio", description="sound of the video: the [audio] file, the init video's sound, or none"
    )
    save_srt: bool = Field(False, description="write video.srt beside the video: each frame's schedule values")
    frame_interpolation_engine: Literal["None", "Flow", "RIFE v4.6"] = Field(
        "None",
        description="also write video_xN.mp4 with N times the frames (Deforum's step): the in-betweens morphed "
        "along the optical flow (Flow, no model) or made by RIFE v4.6 (its weights: frame_interpolation_model)",
    )
    frame_interpolation_model: str = path(
        "", "RIFE v4.6's weights (RIFE46.pkl); empty: RIFE46.pkl in torch.hub's checkpoints folder"
    )
    frame_interpolation_x_amount: int = Field(2, ge=2, le=10, description="frames per frame in the interpolated video")
    frame_interpolation_slow_mo_enabled: bool = Field(
        False, description="slow motion: the interpolated video plays slow-mo amount times slower, without sound"
    )
    frame_interpolation_slow_mo_amount: int = Field(2, ge=2, le=10, description="how many times slower (slow-mo)")
    frame_interpolation_keep_imgs: bool = Field(False, description="keep the interpolated frames in interpolated_xN/")
    r_upscale_video: bool = Field(
        False, description="also write video_upscaled_xN.mp4, the frames upscaled after the render (Deforum's step)"
    )
    r_upscale_factor: Literal["x2", "x3", "x4"] = Field("x2", description="how many times wider and taller")
    r_upscale_model: str = Field(
        "lanczos",
        description="a Real-ESRGAN-style model file (.pth / .safetensors, run on the device), or bicubic / lanczos "
        "(no weights)",
    )
    r_upscale_keep_imgs: bool = Field(True, description="keep the upscaled frames in upscaled_xN/")
    r_upscale_tile: int = Field(256, ge=0, description="tile size in pixels the model runs on (0 = whole frames)")


AUDIO_BUILTINS = ("amp", "onset", "beat", "bpm")  # provided by the audio module
_RESERVED_NAMES = {*FRAME_VARIABLES, *TIMELINE_VARIABLES, *AUDIO_BUILTINS}


def usable_variable_name(value: str) -> str:
    """``value`` if schedules can read it as a variable of its own, else a ValueError saying why."""
    if not value.isidentifier() or keyword.iskeyword(value):
        raise ValueError(f"{value!r} is not a usable variable name; use letters, digits and _ (e.g. fLo)")
    if value in _RESERVED_NAMES or value in CONSTANTS or value in FUNCTIONS:
        raise ValueError(f"{value!r} is already a built-in name; choose another (e.g. f{value.capitalize()})")
    return value


class AudioFilter(Group):
    """One Butterworth bandpass filter (pytti's audio filters): its envelope becomes the variable ``name``."""

    name: str = Field(description="variable name in schedules and prompts, e.g. fLo")
    f_center: float = Field(gt=0, description="centre frequency in Hz")
    f_width: float = Field(gt=0, description="band width in Hz")
    order: int = Field(5, ge=1, le=12, description="filter order (slope)")

    @model_validator(mode="before")
    @classmethod
    def _pytti_names(cls, data: Any) -> Any:
        """pytti writes ``variable_name``."""
        if isinstance(data, dict) and "variable_name" in data and "name" not in data:
            data = {**data, "name": data["variable_name"]}
            del data["variable_name"]
        return data

    @field_validator("name")
    @classmethod
    def _usable_name(cls, value: str) -> str:
        return usable_variable_name(value)


class AudioSettings(Group):
    file: str = path("", "audio track driving the envelopes (and the video's sound)")
    offset: float = Field(0.0, ge=0, description="seconds into the track where frame 0 starts")
    filters: list[AudioFilter] = Field(default_factory=list, description="bandpass filters; each becomes a variable")
    normalize: Literal["peak", "percentile", "none"] = Field("peak", description="scale each envelope to 0..1")
    attack_ms: float = Field(0.0, ge=0, description="envelope rise smoothing in ms")
    release_ms: float = Field(0.0, ge=0, description="envelope fall smoothing in ms")
    bpm: float = Field(0.0, ge=0, description="tempo for `8b` keyframes; 0 detects it from the track")

    @field_validator("filters")
    @classmethod
    def _unique_names(cls, filters: list[AudioFilter]) -> list[AudioFilter]:
        seen: set[str] = set()
        for audio_filter in filters:
            if audio_filter.name in seen:
                raise ValueError(f"two filters are named {audio_filter.name!r}; give each its own name")
            seen.add(audio_filter.name)
        return filters


class LiveSettings(Group):
    target_fps: float = Field(15, gt=0, le=240, description="live mode: frames per second to aim for")
    loop_audio: bool = Field(True, description="live mode: start the audio file again at its end (off: stop there)")
    jitter_ms: float = Field(
        40, ge=0, le=1000, description="live --serve: how long the page's sound is held to even out the network"
    )
    variables: list[str] = Field(
        default_factory=list,
        description="live mode: names OSC sets (/driftwave/var/NAME value), read in every schedule and prompt "
        "weight; 0 until set, and in renders",
    )

    @field_validator("variables")
    @classmethod
    def _usable_names(cls, names: list[str]) -> list[str]:
        return [usable_variable_name(name) for name in names]


class ModelSettings(Group):
    backend: Literal["diffusers", "tiny", "preview"] = Field(
        "diffusers", description="diffusers: Stable Diffusion; tiny: random test weights; preview: motion only"
    )
    model: str = path("stabilityai/sd-turbo", "checkpoint: hub id, diffusers folder or .safetensors file")
    single_file_config: str = path("", "for a single-file checkpoint: a diffusers folder or hub id with its configs")
    device: str = Field("auto", description="auto, cuda, cuda:1, mps or cpu")
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto", description="weights precision (auto: float16 on a GPU, float32 on the CPU)"
    )
    attention_slicing: bool = Field(False, description="compute attention in slices: less GPU memory, slower")
    vae_tiling: bool = Field(False, description="decode in tiles: large images on small GPUs")
    cpu_offload: bool = Field(False, description="keep idle model parts in CPU memory (CUDA only)")
    lora: str = path("", "a LoRA fused into the UNet (hub id, folder or .safetensors), e.g. an LCM-LoRA for 4 steps")
    lora_scale: float = Field(1.0, ge=0, le=4, description="how much of the LoRA is fused in")
    lora_dir: str = path(
        "",
        "folder of the LoRA files that <lora:NAME:W> prompt tags name (empty: beside the model, A1111's models/Lora)",
    )
    tiny_vae: str = path(
        "", "a tiny autoencoder (AutoencoderTiny, e.g. madebyollin/taesd) for fast encode/decode in live mode"
    )
    channels_last: bool = Field(False, description="UNet in channels-last memory layout (faster on recent GPUs)")
    compile_unet: bool = Field(False, description="torch.compile the UNet: slow first frames, faster after (CUDA)")
    skip_unloadable_controlnet: bool = Field(
        False, description="when a ControlNet unit's model cannot be loaded, render without that unit (and say so)"
    )


class PromptingSettings(Group):
    negative_prompt: str = Field("", description="negative prompt added to every prompt")
    scene_prefix: str = Field("", description="text put before every prompt (pytti scene_prefix)")
    scene_suffix: str = Field("", description="text put after every prompt (pytti scene_suffix)")
    prompt_syntax: Literal["driftwave", "a1111"] = Field(
        "driftwave",
        description="driftwave: pytti sub-prompts (text:weight, |, ||) and A1111 emphasis; "
        "a1111: as A1111 reads prompts (colons and | are text), set for imported Deforum files",
    )
    prompt_blend_frames: int = Field(
        -1, ge=-1, description="frames over which a keyed prompt fades in before its key; 0 cuts, -1 the whole gap"
    )
    still_prompts: list[str] = Field(
        default_factory=lambda: [
            "a beautiful forest by Asher Brown Durand, trending on Artstation",
            "a beautiful portrait of a woman by Artgerm, trending on Artstation",
        ],
        description="prompts of the None (stills) mode",
    )


DEFAULT_PROMPTS = {
    "0": "tiny cute bunny, vibrant diffraction, highly detailed, intricate, ultra hd, sharp photo, "
    "crepuscular rays, in focus",
    "30": "anthropomorphic clean cat, surrounded by fractals, epic angle and pose, symmetrical, 3d, depth of field",
    "60": "a beautiful coconut --neg photo, realistic",
    "90": "a beautiful durian, award winning photography",
}


CONTROL_MODES = ("Balanced", "My prompt is more important", "ControlNet is more important")
RESIZE_MODES = ("Inner Fit (Scale to Fit)", "Outer Fit (Shrink to Fit)", "Just Resize")
_A1111_RESIZE = {"crop and resize": RESIZE_MODES[0], "resize and fill": RESIZE_MODES[1], "just resize": RESIZE_MODES[2]}


class ControlNetUnit(Group):
    """One ControlNet unit (Deforum's ``cn_N_*``): a ControlNet model steering every generation
    by a control image, the frame's own or one from ``vid_path``, after its preprocessor."""

    enabled: bool = Field(True, description="use this unit")
    module: str = Field(
        "none",
        description="preprocessor: none, canny, tile_resample, depth (our depth model), lineart_standard, invert, "
        "or a controlnet-aux one (openpose_full, ...)",
    )
    model: str = path("", "ControlNet checkpoint: hub id (lllyasviel/control_v11p_sd15_canny), folder or .safetensors")
    weight: ScheduleText = schedule("0:(1)", "how strongly the unit steers (0: not at all)")
    guidance_start: ScheduleText = schedule("0:(0.0)", "share of the steps after which the unit starts")
    guidance_end: ScheduleText = schedule("0:(1.0)", "share of the steps after which the unit stops")
    control_mode: Literal[CONTROL_MODES] = Field(
        CONTROL_MODES[0], description="Balanced; softer control (the prompt counts more); or control on the prompt only"
    )
    resize_mode: Literal[RESIZE_MODES] = Field(
        RESIZE_MODES[0], description="a control image of another shape: cropped to fill, padded, or stretched"
    )
    processor_res: int = Field(64, ge=64, le=2048, description="the preprocessor's working resolution")
    threshold_a: float = Field(64, description="the preprocessor's first threshold (canny: low)")
    threshold_b: float = Field(64, description="the preprocessor's second threshold (canny: high)")
    pixel_perfect: bool = Field(False, description="the preprocessor works at the render size (processor_res unused)")
    vid_path: str = path("", "control image or video (one frame per frame); empty: the frame's own init")
    mask_vid_path: str = without_effect(
        "", "mask video of the control", "Deforum's own UI marks it not working", kind="path"
    )
    overwrite_frames: bool = Field(True, description="extract vid_path's frames again on every run")
    loopback_mode: bool = Field(False, description="the frame's init (the previous frame moved on) is the control")
    low_vram: bool = without_effect(False, "A1111's low-VRAM switch", "memory is managed by the model settings")

    @model_validator(mode="before")
    @classmethod
    def _a1111_values(cls, data: Any) -> Any:
        """A1111's ControlNet numbers and names for the modes; Deforum's quoted paths."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if isinstance(data.get("control_mode"), int) and 0 <= data["control_mode"] < 3:
            data["control_mode"] = CONTROL_MODES[data["control_mode"]]
        if isinstance(data.get("resize_mode"), str):
            data["resize_mode"] = _A1111_RESIZE.get(data["resize_mode"].lower(), data["resize_mode"])
        for name in ("vid_path", "mask_vid_path", "model"):
            if isinstance(data.get(name), str):
                data[name] = data[name].strip().strip('"').strip("'")
        return data


class Settings(BaseModel):
    """All settings of a run. ``prompts`` maps keyframe positions to prompt text."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    animation: AnimationSettings = Field(default_factory=AnimationSettings)
    prompts: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_PROMPTS), description="prompts by frame")
    prompting: PromptingSettings = Field(default_factory=PromptingSettings)
    motion: MotionSettings = Field(default_factory=MotionSettings)
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    anti_blur: AntiBlurSettings = Field(default_factory=AntiBlurSettings)
    coherence: CoherenceSettings = Field(default_factory=CoherenceSettings)
    depth: DepthSettings = Field(default_factory=DepthSettings)
    video_input: VideoInputSettings = Field(default_factory=VideoInputSettings)
    hybrid: HybridSettings = Field(default_factory=HybridSettings)
    interpolation: InterpolationSettings = Field(default_factory=InterpolationSettings)
    resume: ResumeSettings = Field(default_factory=ResumeSettings)
    image: ImageSettings = Field(default_factory=ImageSettings)
    save: SaveSettings = Field(default_factory=SaveSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    init: InitSettings = Field(default_factory=InitSettings)
    guidance: GuidanceSettings = Field(default_factory=GuidanceSettings)
    video: VideoOutputSettings = Field(default_factory=VideoOutputSettings)
    audio: AudioSettings = Field(default_factory=AudioSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    live: LiveSettings = Field(default_factory=LiveSettings)
    controlnet: list[ControlNetUnit] = Field(default_factory=list, description="ControlNet units ([[controlnet]])")

    @field_validator("prompts", mode="before")
    @classmethod
    def _keys_as_text(cls, value: Any) -> Any:
        """TOML and JSON give string keys; Python callers may pass ints."""
        if isinstance(value, dict):
            return {str(key): text for key, text in value.items()}
        return value


GROUPS: dict[str, type[Group]] = {
    name: field.annotation
    for name, field in Settings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, Group)
}


def field_index() -> dict[str, tuple[str, str]]:
    """Every field name -> (group, name): field names are unique across groups."""
    index: dict[str, tuple[str, str]] = {}
    for group, model in GROUPS.items():
        for name in model.model_fields:
            assert name not in index, f"{name} is in both {index[name][0]} and {group}"
            index[name] = (group, name)
    return index


FIELDS = field_index()


def fields_without_effect() -> dict[str, str]:
    """``"group.field"`` -> why it does nothing here, for every field marked so."""
    return {
        f"{group}.{name}": field.json_schema_extra["no_effect"]
        for group, model in GROUPS.items()
        for name, field in model.model_fields.items()
        if isinstance(field.json_schema_extra, dict) and "no_effect" in field.json_schema_extra
    }


def fields_of_kind(kind: str) -> list[tuple[str, str]]:
    """(group, name) of every field whose schema kind is ``kind`` (``schedule``, ``text_schedule``)."""
    return [
        (group, name)
        for group, model in GROUPS.items()
        for name, field in model.model_fields.items()
        if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("kind") == kind
    ]
