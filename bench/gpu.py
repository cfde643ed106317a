"""The GPU bench (issue 14): one run on a GPU host, one table at the end.

Random weights of the real architectures (bench/architectures.py), saved to a temporary folder
and loaded through the product's own code (DiffusionBackend.load, engine.depth.load_depth_model):

a. one img2img frame at 512x512 fp16, SD-1.5 architecture, 25 steps at Deforum strength 0.65
   (Driftwave runs the last int(25 * 0.35) = 8 steps, cfg 7: two UNet passes a step), with and
   without the non-model work of a 2D frame (bench/frame_ops.py's ``our_steps``: warp, LAB colour
   match against a reference, contrast, unsharp mask, perlin grain) on the GPU tensors. Baseline:
   the generation alone. Goal: the non-model work <= 5 % of the frame.
b. the live loop with the sd-turbo architecture, 1 denoising step at 512x512, against a bare
   diffusers StableDiffusionImg2ImgPipeline loop (bench/live.py's ``live_rate`` / ``bare_rate``),
   with the model's VAE and with TAESD in both. Goals: >= 60 fps and >= 90 % of the bare loop.
c. a 3D frame's depth and warp: Depth-Anything-V2-Small on the 512x512 image (resized to its
   518x518 input as its image processor says) + engine.motion.warp_3d, ms per frame.
d. peak VRAM (torch.cuda.max_memory_allocated, reset before) of a 3D frame at 512x512 fp16 with
   SD-1.5 and the depth model loaded: depth + warp + one img2img generation. Goal: <= 4 GiB.

Timings: warm-up run first, torch.cuda.synchronize around each, medians. ``--dry-run``: the same
on the CPU with the tiny test architectures at 64x64, float32, a few steps (checks the bench).

Run: bash bench/gpu.sh [--dry-run] [--json]   (gpu.sh brings the packages a bare GPU host lacks)
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing comes from a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import live as live_bench  # noqa: E402
from bench.architectures import (  # noqa: E402
    depth_anything_v2_small_folder,
    sd15_folder,
    sd_turbo_folder,
    taesd_folder,
    tiny_depth_folder,
    with_vae,
)
from bench.common import arguments, median_seconds, report  # noqa: E402
from bench.frame_ops import MOTION_3D, our_steps, whole_frame  # noqa: E402
from engine import coherence  # noqa: E402
from engine.backends import GenerationRequest  # noqa: E402
from engine.backends.diffusion import DiffusionBackend  # noqa: E402
from engine.backends.tiny import save_tiny_pipeline  # noqa: E402
from engine.depth import DepthEstimator, load_depth_model  # noqa: E402
from engine.motion import warp_3d  # noqa: E402
from engine.prompts import PromptOptions, compile_prompts  # noqa: E402
from engine.schedule import Timeline  # noqa: E402
from engine.settings import DepthSettings, ModelSettings  # noqa: E402

PROMPT, NEGATIVE = "a luminous coral reef city at dusk, volumetric light", "blurry, lowres"
GOALS = {"overhead_share": 0.05, "live_fps": 60.0, "live_ratio": 0.90, "peak_vram_gib": 4.0}
GOAL_TEXT = {"overhead_share": "<= 5 %", "live_fps": ">= 60 fps", "live_ratio": ">= 90 %", "peak_vram_gib": "<= 4 GiB"}
HEADER = f"  {'measure':58} {'value':>16}  {'goal':>9}  met"
GIB = 2**30


@dataclass(frozen=True)
class Scale:
    """What a run measures at: the real sizes on the GPU, or tiny ones on the CPU (--dry-run)."""

    dry_run: bool
    device: str
    dtype: torch.dtype
    size: int
    steps: int
    strength: float
    repeats: int
    live_seconds: float

    @property
    def steps_run(self) -> int:
        """The sampler steps an img2img frame runs (DiffusionBackend.generate: Deforum's strength)."""
        return min(int(self.steps * (1.0 - self.strength)), self.steps)

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()


REAL = Scale(False, "cuda", torch.float16, size=512, steps=25, strength=0.65, repeats=15, live_seconds=8.0)
DRY = Scale(True, "cpu", torch.float32, size=64, steps=4, strength=0.65, repeats=2, live_seconds=0.5)


@dataclass(frozen=True)
class Models:
    """The checkpoint folders of a run."""

    sd15: Path
    sd_turbo: Path
    taesd: Path
    sd_turbo_taesd: Path  # sd-turbo with TAESD as its VAE, for the bare loop
    depth: Path


def build_models(root: Path, scale: Scale) -> Models:
    """Random-weight checkpoints in ``root``: the real architectures, or the tiny ones (dry run)."""
    with torch.device(scale.device):  # on the GPU: initialising a billion weights takes no time
        if scale.dry_run:
            sd15 = sd_turbo = save_tiny_pipeline(root / "tiny-sd")
            depth = tiny_depth_folder(root / "tiny-depth")
        else:
            sd15 = sd15_folder(root / "sd15", scale.dtype)
            sd_turbo = sd_turbo_folder(root / "sd-turbo", scale.dtype)
            depth = depth_anything_v2_small_folder(root / "depth-anything-v2-small", scale.dtype)
        taesd = taesd_folder(root / "taesd", scale.dtype)
    return Models(sd15, sd_turbo, taesd, with_vae(sd_turbo, taesd, root / "sd-turbo-taesd"), depth)


def smooth_image(scale: Scale, phase: float = 0.0) -> torch.Tensor:
    """A smooth (1, 3, H, W) picture in [0, 1] on the device: frames and references with real histograms."""
    axis = torch.linspace(0, 1, scale.size)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    channels = [
        0.5 + 0.4 * torch.sin(2 * torch.pi * (k + 1) * x + phase) * torch.cos(2 * torch.pi * (3 - k) * y + phase)
        for k in range(3)
    ]
    return torch.stack(channels)[None].to(scale.device)


def frame_request(scale: Scale, init: torch.Tensor) -> GenerationRequest:
    """A Deforum 2D/3D frame's request: img2img from ``init`` at the run's steps and strength, cfg 7."""
    prompt = compile_prompts({"0": PROMPT}, Timeline(1), options=PromptOptions(negative_prompt=NEGATIVE)).at(0)
    return GenerationRequest(
        prompt=prompt,
        seed=1,
        width=scale.size,
        height=scale.size,
        steps=scale.steps,
        cfg=7.0,
        sampler="euler_a",
        init=init,
        strength=scale.strength,
    )


def load_sd(folder: Path, scale: Scale, tiny_vae: str = "") -> DiffusionBackend:
    model = ModelSettings(backend="diffusers", model=str(folder), device=scale.device, tiny_vae=tiny_vae)
    return DiffusionBackend.load(str(folder), model, device=scale.device, label=folder.name)


def quiet_libraries() -> None:
    """No progress bars or notes from diffusers and transformers while models are built and saved."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for logging in (diffusers_logging, transformers_logging):
        logging.disable_progress_bar()
        logging.set_verbosity_error()


def release() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# -- the measures ---------------------------------------------------------------------------------


def peak_vram(backend: DiffusionBackend, depth: DepthEstimator, scale: Scale) -> dict:
    """d. The most memory a 3D frame takes with both models loaded (the run's first frame)."""
    if scale.device != "cuda":
        return {"peak_vram_gib": None, "loaded_vram_gib": None}
    release()
    torch.cuda.reset_peak_memory_stats()
    loaded = torch.cuda.memory_allocated()
    image = smooth_image(scale)
    warped = warp_3d(image, MOTION_3D, depth.predict(image, DepthSettings().midas_weight))
    backend.generate(replace(frame_request(scale, warped), seed=0))
    torch.cuda.synchronize()
    return {"peak_vram_gib": torch.cuda.max_memory_allocated() / GIB, "loaded_vram_gib": loaded / GIB}


def img2img_frame(backend: DiffusionBackend, scale: Scale) -> dict:
    """a. The generation alone, the non-model work alone, and a whole frame (work, then generation)."""
    image, reference = smooth_image(scale), smooth_image(scale, phase=1.3)
    steps = our_steps(coherence.ColorReference(reference, "LAB"))
    request = frame_request(scale, image)
    first = backend.generate(request)
    generation = median_seconds(lambda seed: backend.generate(replace(request, seed=seed)), scale.repeats, scale.sync)
    non_model = median_seconds(lambda seed: whole_frame(steps, image, seed), scale.repeats * 3, scale.sync)

    def frame(seed: int) -> torch.Tensor:
        return backend.generate(replace(request, seed=seed, init=whole_frame(steps, image, seed)))

    whole = median_seconds(frame, scale.repeats, scale.sync)
    return {
        "img2img_steps": scale.steps,
        "img2img_strength": scale.strength,
        "img2img_steps_run": scale.steps_run,
        "generation_ms": generation * 1e3,
        "non_model_ms": non_model * 1e3,
        "baseline_ms": generation * 1e3,  # the bare generation
        "ours_ms": whole * 1e3,  # the frame with our non-model work
        "overhead_share": (whole - generation) / whole,  # measured: the frame with it against without
        "non_model_share": non_model / (generation + non_model),  # from the work timed alone
        "finite_output": bool(torch.isfinite(first).all()),
    }


def depth_and_warp(depth: DepthEstimator, scale: Scale) -> dict:
    """c. A 3D frame's depth map and warp, each and together."""
    image, weight = smooth_image(scale), DepthSettings().midas_weight
    depth_map = depth.predict(image, weight)
    predict = median_seconds(lambda _: depth.predict(image, weight), scale.repeats * 2, scale.sync)
    warp = median_seconds(lambda _: warp_3d(image, MOTION_3D, depth_map), scale.repeats * 2, scale.sync)
    both = median_seconds(
        lambda _: warp_3d(image, MOTION_3D, depth.predict(image, weight)), scale.repeats * 2, scale.sync
    )
    return {
        "depth_input": list(depth.model_size(scale.size, scale.size)),
        "depth_ms": predict * 1e3,
        "warp_ms": warp * 1e3,
        "depth_warp_ms": both * 1e3,
    }


def live_loop(models: Models, scale: Scale, taesd: bool) -> dict:
    """b. Frames per second of the live loop and of a bare diffusers loop, the same model and VAE."""
    live_bench.SIZE = scale.size  # bench/live.py's loops run at its module's size
    suffix = "_taesd" if taesd else ""
    bare = live_bench.bare_rate(
        models.sd_turbo_taesd if taesd else models.sd_turbo, scale.device, scale.dtype, scale.live_seconds
    )
    release()
    backend = load_sd(models.sd_turbo, scale, tiny_vae=str(models.taesd) if taesd else "")
    settings = live_bench.settings_for(
        "diffusers", 240, steps=2, sampler="euler", strength_schedule="0:(0.5)", scale="0:(1)", model=models.sd_turbo
    )  # 2 steps at strength 0.5: one denoising step, as bare_rate
    fps, latency = live_bench.live_rate(settings, backend, scale.live_seconds)
    del backend
    release()
    return {f"bare{suffix}_fps": bare, f"live{suffix}_fps": fps, f"live{suffix}_ratio": fps / bare,
            f"live{suffix}_latency_ms": latency}  # fmt: skip


# -- the run --------------------------------------------------------------------------------------


SECTIONS = {
    "d": ("peak_vram_gib", "loaded_vram_gib"),
    "a": ("generation_ms", "non_model_ms", "ours_ms", "baseline_ms", "overhead_share", "non_model_share"),
    "c": ("depth_ms", "warp_ms", "depth_warp_ms", "depth_input"),
    "b": ("bare_fps", "live_fps", "live_ratio", "live_latency_ms"),
    "b+taesd": ("bare_taesd_fps", "live_taesd_fps", "live_taesd_ratio", "live_taesd_latency_ms"),
}


def run(scale: Scale) -> dict:
    """Every measure; a section that fails leaves its values None and its error in ``errors``."""
    result: dict = {key: None for keys in SECTIONS.values() for key in keys}
    errors: dict[str, str] = {}

    def section(names: str, work: Callable[[], dict | None]) -> None:
        started = time.perf_counter()
        try:
            result.update(work() or {})
        except Exception as error:
            traceback.print_exc()
            for name in names.split():
                errors.setdefault(name, described(error))
        print(f"[{names}] {time.perf_counter() - started:6.1f} s", flush=True)

    with tempfile.TemporaryDirectory(prefix="driftwave-gpu-bench-") as temporary:
        started = time.perf_counter()
        models = build_models(Path(temporary), scale)
        print(f"[models built and saved] {time.perf_counter() - started:6.1f} s", flush=True)
        section("d a c", lambda: sd15_measures(models, scale, section))
        release()
        section("b", lambda: live_loop(models, scale, taesd=False))
        section("b+taesd", lambda: live_loop(models, scale, taesd=True))
    result["errors"] = errors
    return result


def sd15_measures(models: Models, scale: Scale, section: Callable[[str, Callable[[], dict]], None]) -> None:
    """d, a and c with SD-1.5 and the depth model loaded (the peak first: the run's first frame)."""
    sd15 = load_sd(models.sd15, scale)
    depth = load_depth_model(str(models.depth), scale.device)
    section("d", lambda: peak_vram(sd15, depth, scale))
    section("a", lambda: img2img_frame(sd15, scale))
    section("c", lambda: depth_and_warp(depth, scale))


def described(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def met(result: dict, scale: Scale) -> dict:
    """Each goal: True/False, None where not measured (and every one on a dry run)."""
    checks = {
        "overhead_share": lambda value, goal: value <= goal,
        "live_fps": lambda value, goal: value >= goal,
        "live_ratio": lambda value, goal: value >= goal,
        "peak_vram_gib": lambda value, goal: value <= goal,
    }
    return {
        name: None if scale.dry_run or result.get(name) is None else check(result[name], GOALS[name])
        for name, check in checks.items()
    }


def table(result: dict, scale: Scale) -> str:
    """The run as one table: a row per measure, with its goal and whether it is met."""

    def value(key: str, unit: str, form: str = "{:.1f}") -> str:
        if scale.device != "cuda" and key.endswith("vram_gib"):
            return "n/a (CPU)"
        number = result.get(key)
        if number is None:
            failed = any(key in keys and name in result["errors"] for name, keys in SECTIONS.items())
            return "error (see log)" if failed else "n/a"
        return f"{form.format(number)} {unit}".strip()

    def verdict(goal: str | None) -> str:
        if goal is None:
            return ""
        return "dry run" if scale.dry_run else {True: "yes", False: "NO", None: "-"}[result["met"][goal]]

    size, steps = f"{scale.size}x{scale.size}", f"{scale.steps} steps x strength {scale.strength}"
    depth_input = "x".join(map(str, result["depth_input"] or ["?"]))
    rows = [
        f"a. img2img frame, SD-1.5, {size}, {steps} ({scale.steps_run} run), cfg 7",
        ("   generation (baseline)", value("generation_ms", "ms"), None),
        ("   non-model work (warp, LAB match, contrast, unsharp, grain)", value("non_model_ms", "ms", "{:.2f}"), None),
        ("   whole frame (ours)", value("ours_ms", "ms"), None),
        ("   overhead share (frame with it against without)", value("overhead_share", "", "{:.1%}"), "overhead_share"),
        ("   overhead share (the work timed alone)", value("non_model_share", "", "{:.1%}"), None),
        f"b. live loop, sd-turbo, 1 step, {size}, the model's VAE",
        ("   bare diffusers img2img loop", value("bare_fps", "fps"), None),
        ("   ours (live loop)", value("live_fps", "fps"), "live_fps"),
        ("   ours / bare", value("live_ratio", "", "{:.1%}"), "live_ratio"),
        ("   audio to frame", value("live_latency_ms", "ms", "{:.0f}"), None),
        "b. the same with TAESD in both loops",
        ("   bare diffusers img2img loop", value("bare_taesd_fps", "fps"), None),
        ("   ours (live loop)", value("live_taesd_fps", "fps"), None),
        ("   ours / bare", value("live_taesd_ratio", "", "{:.1%}"), None),
        f"c. 3D warp with depth per frame, {size}",
        (f"   Depth-Anything-V2-Small (input {depth_input})", value("depth_ms", "ms", "{:.2f}"), None),
        ("   warp_3d", value("warp_ms", "ms", "{:.2f}"), None),
        ("   depth + warp", value("depth_warp_ms", "ms", "{:.2f}"), None),
        f"d. peak VRAM of a 3D frame, {size}, SD-1.5 + depth loaded",
        ("   weights loaded", value("loaded_vram_gib", "GiB", "{:.2f}"), None),
        ("   peak (depth + warp + img2img)", value("peak_vram_gib", "GiB", "{:.2f}"), "peak_vram_gib"),
    ]
    lines = [HEADER]
    for row in rows:
        if isinstance(row, str):
            lines.append(f"  {row}")
            continue
        label, shown, goal = row
        lines.append(f"  {label:58} {shown:>16}  {GOAL_TEXT.get(goal, ''):>9}  {verdict(goal)}".rstrip())
    lines += [f"  error in {name}: {message}" for name, message in result["errors"].items()]
    return "\n".join(lines)


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("torch", "diffusers", "transformers", "huggingface_hub"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny models on the CPU, to check the bench itself")
    parser.add_argument("--repeats", type=int, help="timed runs per median (default 15; 2 on a dry run)")
    parser.add_argument("--live-seconds", type=float, help="seconds per live-loop rate (default 8; 0.5 on a dry run)")
    options = parser.parse_args()
    scale = DRY if options.dry_run else REAL
    if not scale.dry_run and not torch.cuda.is_available():
        sys.exit("bench/gpu.py: no CUDA device (torch.cuda.is_available() is False); --dry-run runs on the CPU")
    scale = replace(
        scale, repeats=options.repeats or scale.repeats, live_seconds=options.live_seconds or scale.live_seconds
    )
    started = time.perf_counter()
    device = torch.cuda.get_device_name() if scale.device == "cuda" else "CPU"
    print(f"Driftwave GPU bench on {device}, {str(scale.dtype).removeprefix('torch.')}, {versions()}", flush=True)
    quiet_libraries()
    result = run(scale)
    result["met"] = met(result, scale)
    elapsed = time.perf_counter() - started
    print()
    print(
        f"Driftwave GPU bench{' (dry run: tiny models on the CPU)' if scale.dry_run else ''}: {device}, "
        f"{str(scale.dtype).removeprefix('torch.')}, random weights of the real architectures, {elapsed:.0f} s"
    )
    print(table(result, scale))
    result.update(
        dry_run=scale.dry_run,
        device=device,
        dtype=str(scale.dtype).removeprefix("torch."),
        size=scale.size,
        repeats=scale.repeats,
        live_seconds=scale.live_seconds,
        versions=versions(),
        goals=GOALS,
        seconds=elapsed,
    )
    report(result, options.json)
    if result["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
