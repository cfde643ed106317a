"""ControlNet units (Deforum's ``cn_1`` … ``cn_5``, here ``[[controlnet]]``): each frame's control
image per unit, made from the unit's source by its preprocessor, handed to the backend with the
unit's weight and step range at that frame.

The source is ``vid_path`` — an image, the same on every frame, or a video, extracted once into
the batch folder (``controlnet_N_inputframes``, re-used like Video Input's) and held at its last
frame past its end, with a notice — or, with ``loopback_mode`` or no ``vid_path``, the frame's
init: the previous frame moved on (Deforum's ``init_sample``), the init image at frame 0, where
without one the unit sits the frame out (as Deforum's). The preprocessors that need no weights
are done here (none, canny, tile_resample, depth by the run's depth model, lineart_standard,
invert); the rest come from controlnet-aux when it is installed and its model loads.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from engine.errors import DriftwaveError, notify
from engine.frame_params import ControlValues, FrameParams
from engine.images import from_array, load_image, to_array
from engine.settings import ControlNetUnit, Settings

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
DEPTH_MODULES = ("depth", "depth_midas", "depth_zoe", "depth_leres", "depth_leres++", "depth_anything")
OWN_MODULES = ("none", "canny", "tile_resample", "lineart_standard", "invert", *DEPTH_MODULES)
AUX_MODULES = {  # A1111's name -> controlnet-aux's detector (its weights: lllyasviel/Annotators)
    "openpose": "OpenposeDetector",
    "openpose_face": "OpenposeDetector",
    "openpose_hand": "OpenposeDetector",
    "openpose_full": "OpenposeDetector",
    "dw_openpose_full": "OpenposeDetector",
    "softedge_hed": "HEDdetector",
    "scribble_hed": "HEDdetector",
    "softedge_pidinet": "PidiNetDetector",
    "scribble_pidinet": "PidiNetDetector",
    "lineart": "LineartDetector",
    "lineart_realistic": "LineartDetector",
    "lineart_coarse": "LineartDetector",
    "lineart_anime": "LineartAnimeDetector",
    "mlsd": "MLSDdetector",
    "normal_bae": "NormalBaeDetector",
    "shuffle": "ContentShuffleDetector",
}
NOT_CONTROLNETS = ("reference_only", "reference_adain", "reference_adain+attn", "inpaint_only", "revision_clipvision")


@dataclass(frozen=True)
class ControlInput:
    """One unit's control at one frame, for the backend: ``image`` (1, 3, H, W) in [0, 1]."""

    model: str
    image: torch.Tensor
    values: ControlValues
    mode: str
    field: str  # the unit's model field, for messages

    def active(self, step: int, steps: int) -> bool:
        """Whether the unit steers step ``step`` of ``steps`` (diffusers' controlnet_keep)."""
        return not (step / steps < self.values.start or (step + 1) / steps > self.values.end)


def units_in_use(settings: Settings) -> list[tuple[int, ControlNetUnit]]:
    """(number from 1, unit) of every enabled unit."""
    return [(number, unit) for number, unit in enumerate(settings.controlnet, 1) if unit.enabled]


def uses_depth(settings: Settings) -> bool:
    return any(unit.module in DEPTH_MODULES for _, unit in units_in_use(settings))


def check_controlnet(settings: Settings) -> None:
    """Before the first frame: every enabled unit has a model, a preprocessor that can run, a source."""
    for number, unit in units_in_use(settings):
        field = f"controlnet.{number}"
        if not unit.model or unit.model.lower() == "none":
            raise DriftwaveError(f"ControlNet unit {number} has no model", field=f"{field}.model", hint=_MODEL_HINT)
        if unit.module in NOT_CONTROLNETS:
            raise DriftwaveError(
                f"ControlNet unit {number}'s {unit.module!r} is an A1111 ControlNet feature, not a preprocessor "
                "for a ControlNet model; Driftwave does not have it",
                field=f"{field}.module",
                hint="disable the unit (enabled = false) or choose a preprocessor: " + ", ".join(OWN_MODULES),
            )
        if unit.module in AUX_MODULES:
            _aux_detector(unit.module, f"{field}.module")
        elif unit.module not in OWN_MODULES:
            raise DriftwaveError(
                f"ControlNet unit {number}'s preprocessor {unit.module!r} is unknown",
                field=f"{field}.module",
                hint="use one of " + ", ".join((*OWN_MODULES, *AUX_MODULES)),
            )
        if unit.module in DEPTH_MODULES and settings.depth.depth_model.strip().lower() == "flat":
            raise DriftwaveError(
                f"ControlNet unit {number}'s {unit.module} preprocessor needs a depth model",
                field="depth.depth_model",
                hint="set depth.depth_model to a depth checkpoint (e.g. depth-anything/Depth-Anything-V2-Small-hf)",
            )
        if unit.vid_path and not unit.loopback_mode and not Path(unit.vid_path).expanduser().exists():
            raise DriftwaveError(
                f"ControlNet unit {number}'s control video {unit.vid_path!r} does not exist",
                field=f"{field}.vid_path",
                hint="give an image or a video on this machine, or leave it empty to control by the frame itself",
            )


def control_images_for(settings: Settings, backend, batch_dir: Path, depth_model=None) -> ControlImages | None:
    """The run's ControlImages (None without units), its units checked and their models loaded
    now, before the first frame; without a depth model the depth units are left out."""
    if not units_in_use(settings):
        return None
    check_controlnet(settings)
    models = {unit.model: f"controlnet.{number}.model" for number, unit in units_in_use(settings)}
    backend.load_controlnets(models, skip_unloadable=settings.model.skip_unloadable_controlnet)
    return ControlImages(settings, batch_dir, backend.device, depth_model)


_MODEL_HINT = "set it to a ControlNet: a hub id (lllyasviel/control_v11p_sd15_canny), a folder or a .safetensors file"


class ControlImages:
    """The control images of one run's units, their sources opened once.

    ``batch_dir``: where video sources are extracted; ``depth_model``: the run's, for depth."""

    def __init__(self, settings: Settings, batch_dir: Path, device, depth_model=None) -> None:
        self.settings, self.batch_dir, self.device, self.depth_model = settings, batch_dir, device, depth_model
        self.size = (settings.image.W, settings.image.H)
        self.units = [
            (n, unit) for n, unit in units_in_use(settings) if depth_model or unit.module not in DEPTH_MODULES
        ]
        self._sources: dict[int, object] = {}  # unit number -> its still (a tensor) or its VideoFrames
        self._still_controls: dict[int, torch.Tensor] = {}  # a still's control, preprocessed once
        self._held_notice: set[int] = set()

    def inputs(self, params: FrameParams, init: torch.Tensor | None) -> tuple[ControlInput, ...]:
        """Every enabled unit's control at this frame (a unit without a picture sits it out)."""
        controls = []
        for number, unit in self.units:
            source = self._source(number, unit, params.frame, init)
            if source is None:
                continue
            if source is not self._sources.get(number):
                image = self._preprocess(unit, source)
            else:  # a still image: the same control every frame, preprocessed once
                if number not in self._still_controls:
                    self._still_controls[number] = self._preprocess(unit, source)
                image = self._still_controls[number]
            values = params.controlnet[number - 1]
            controls.append(ControlInput(unit.model, image, values, unit.control_mode, f"controlnet.{number}.model"))
        return tuple(controls)

    def _source(self, number: int, unit: ControlNetUnit, frame: int, init: torch.Tensor | None):
        if unit.loopback_mode or not unit.vid_path:
            return init
        if number not in self._sources:
            self._sources[number] = self._open(number, unit)
        frames = self._sources[number]
        if isinstance(frames, torch.Tensor):
            return frames
        if frame >= len(frames) and number not in self._held_notice:
            self._held_notice.add(number)
            notify(
                f"ControlNet unit {number}'s control video has {len(frames)} frames: its last one is held "
                f"from frame {len(frames)} on"
            )
        return frames.frame(min(frame, len(frames) - 1))

    def _open(self, number: int, unit: ControlNetUnit):
        """The unit's still image (a tensor), or its video's frames, extracted once."""
        from engine.video_input import VideoFrames, extract_frames

        path = Path(unit.vid_path).expanduser()
        if path.suffix.lower() in IMAGE_SUFFIXES:
            picture = load_image(path, self.size, field=f"controlnet.{number}.vid_path")[..., :3]
            return from_array(picture, self.device)
        frames = extract_frames(
            path,
            self.batch_dir / f"controlnet_{number}_inputframes",
            nth=1,
            first=0,
            last=self.settings.animation.max_frames - 1,
            overwrite=unit.overwrite_frames,
            field=f"controlnet.{number}.vid_path",
        )
        return VideoFrames(frames, self.size, self.device)

    def _preprocess(self, unit: ControlNetUnit, image: torch.Tensor) -> torch.Tensor:
        """The unit's preprocessor on ``image`` at its working resolution, back at the render size."""
        if unit.module == "none":
            return image
        if unit.module in DEPTH_MODULES:
            from engine.hybrid import nearness

            return nearness(self.depth_model.predict(image, 1.0)).expand(-1, 3, -1, -1).to(image.dtype)
        pixels = to_array(image)
        height, width = pixels.shape[:2]
        resolution = min(width, height) if unit.pixel_perfect else unit.processor_res
        scale = resolution / min(width, height)
        working = cv2.resize(pixels, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        made = _run_module(unit, working)
        return from_array(cv2.resize(made, (width, height), interpolation=cv2.INTER_LINEAR), image.device)


def _run_module(unit: ControlNetUnit, pixels: np.ndarray) -> np.ndarray:
    """A preprocessor on 8-bit RGB, as A1111's ControlNet does it."""
    if unit.module == "canny":
        edges = cv2.Canny(pixels, int(unit.threshold_a), int(unit.threshold_b))
        return np.repeat(edges[..., None], 3, axis=2)
    if unit.module == "tile_resample":  # downsampled by the rate in threshold_a (1 to 8)
        rate = min(max(unit.threshold_a, 1.0), 8.0)
        height, width = pixels.shape[:2]
        small = cv2.resize(pixels, (max(round(width / rate), 1), max(round(height / rate), 1)), cv2.INTER_AREA)
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    if unit.module == "invert":
        return 255 - pixels
    if unit.module == "lineart_standard":
        values = pixels.astype(np.float32)
        intensity = (cv2.GaussianBlur(values, (0, 0), 6.0) - values).min(axis=2).clip(0, 255)
        strong = intensity[intensity > 8]
        intensity /= max(16.0, float(np.median(strong)) if strong.size else 16.0)
        lines = (intensity * 127).clip(0, 255).astype(np.uint8)
        return np.repeat(lines[..., None], 3, axis=2)
    detector = _aux_detector(unit.module, "controlnet.module")
    made = np.asarray(detector(pixels, detect_resolution=min(pixels.shape[:2]), image_resolution=min(pixels.shape[:2])))
    return cv2.resize(made, pixels.shape[1::-1]) if made.shape[:2] != pixels.shape[:2] else made


@functools.cache
def _aux_detector(module: str, field: str):
    """controlnet-aux's detector for ``module``, loaded once (a clear error when it cannot be)."""
    try:
        import controlnet_aux
    except ImportError:
        raise DriftwaveError(
            f"the {module} preprocessor needs controlnet-aux, which is not installed",
            field=field,
            hint="pip install controlnet-aux (its models come from lllyasviel/Annotators), or use a preprocessor "
            "that needs no weights: " + ", ".join(OWN_MODULES),
        ) from None
    detector = getattr(controlnet_aux, AUX_MODULES[module])
    if AUX_MODULES[module] == "ContentShuffleDetector":
        return detector()
    try:
        return detector.from_pretrained("lllyasviel/Annotators")
    except Exception as error:  # hub, file and format errors alike
        raise DriftwaveError(
            f"the {module} preprocessor's model (lllyasviel/Annotators) cannot be loaded: {error}",
            field=field,
            hint="download it once where the hub can be reached, or use a preprocessor that needs no weights",
        ) from None
