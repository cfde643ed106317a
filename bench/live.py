"""Live mode: frames per second and audio-to-frame latency, side by side with a bare loop.

1. The preview backend at 512x512 on the CPU, the demo track played in real time: as fast as it
   goes (a target far above what it reaches) and at a 15 fps target.
2. A random-weight pipeline (``--arch sd-turbo`` on a GPU: the sd-turbo architecture; ``--arch
   tiny``: the test pipeline, to check the bench anywhere) at 512x512, img2img with one
   denoising step (2 steps at strength 0.5), fed back frame to frame: the live loop (schedules,
   warp, colour match, grain, our sampler loop) against a bare diffusers
   StableDiffusionImg2ImgPipeline loop with the prompt embedded once, in the same run.

Run: .venv/bin/python bench/live.py [--arch tiny|sd-turbo] [--seconds 8] [--json]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from audio.live import FileSource  # noqa: E402
from audio.load import load_audio  # noqa: E402
from bench.architectures import sd_turbo_folder  # noqa: E402
from bench.common import arguments, report  # noqa: E402
from engine.backends import load_backend  # noqa: E402
from engine.backends.diffusion import DiffusionBackend  # noqa: E402
from engine.errors import collecting_notices  # noqa: E402
from engine.live import LiveSession  # noqa: E402
from engine.presets import load_preset  # noqa: E402
from engine.settings import ModelSettings  # noqa: E402

SIZE = 512


def settings_for(backend: str, target_fps: float, **more):
    overrides = [f"backend={backend}", f"W={SIZE}", f"H={SIZE}", f"target_fps={target_fps}", "diffusion_cadence=1"]
    overrides += [f"{key}={value}" for key, value in more.items()]
    with collecting_notices():
        return load_preset(ROOT / "presets" / "demo.toml", overrides).settings


def live_rate(settings, backend, seconds: float) -> tuple[float, float]:
    track = load_audio(ROOT / "presets" / "demo_track.flac")
    source = FileSource(track, settings.audio.filters, settings.live.target_fps, loop=True, play=False)
    try:
        LiveSession(settings, backend, source).step()  # warm up: first-frame work, caches
        summary = LiveSession(settings, backend, source).run(duration=seconds)
    finally:
        source.close()
    return summary.mean_fps, summary.mean_latency_ms


def bare_rate(folder: Path, device: str, dtype: torch.dtype, seconds: float) -> float:
    """Frames per second of a plain diffusers img2img feedback loop (prompt embedded once)."""
    from diffusers import StableDiffusionImg2ImgPipeline

    pipeline = StableDiffusionImg2ImgPipeline.from_pretrained(folder, dtype=dtype, safety_checker=None).to(device)
    pipeline.set_progress_bar_config(disable=True)
    embeds, _ = pipeline.encode_prompt("a luminous coral reef city", device, 1, False)
    image = torch.rand(1, 3, SIZE, SIZE, device=device, dtype=dtype)

    def frame(picture):
        options = dict(prompt_embeds=embeds, image=picture, strength=0.5, num_inference_steps=2, guidance_scale=0.0)
        return pipeline(**options, output_type="pt").images

    image = frame(image)  # warm up
    frames, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        image = frame(image)
        frames += 1
    if device == "cuda":
        torch.cuda.synchronize()
    return frames / (time.perf_counter() - started)


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument(
        "--arch", choices=["tiny", "sd-turbo"], default="sd-turbo" if torch.cuda.is_available() else "tiny"
    )
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    result = {"size": SIZE, "preview": {}}
    preview = load_backend(ModelSettings(backend="preview"))
    for target in (240, 15):
        fps, latency = live_rate(settings_for("preview", target), preview, args.seconds)
        label = "as fast as it goes" if target > 100 else f"target {target} fps"
        result["preview"][label] = {"fps": fps, "latency_ms": latency}
        print(f"preview {SIZE}x{SIZE} on the CPU, {label:18}: {fps:6.1f} fps, audio to frame {latency:5.0f} ms")

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    with tempfile.TemporaryDirectory() as temporary:
        if args.arch == "tiny":
            from engine.backends.tiny import tiny_model_dir

            folder = tiny_model_dir()
        else:
            folder = sd_turbo_folder(Path(temporary) / "sd-turbo-random")
        bare = bare_rate(folder, device, dtype, args.seconds)
        model = ModelSettings(backend="diffusers", model=str(folder), device=device)
        backend = DiffusionBackend.load(str(folder), model, device=device, label=args.arch)
        settings = settings_for(
            "diffusers", 240, steps=2, sampler="euler", strength_schedule="0:(0.5)", scale="0:(1)", model=str(folder)
        )
        ours, latency = live_rate(settings, backend, args.seconds)
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"{args.arch} (random weights) {SIZE}x{SIZE}, 1 denoising step, img2img, on {name} ({dtype}):")
    print(f"  bare diffusers img2img loop  {bare:6.2f} fps")
    print(f"  live loop                    {ours:6.2f} fps = {ours / bare:.0%} of the bare loop (target >= 90 %),")
    print(f"                               audio to frame {latency:.0f} ms")
    result.update(
        arch=args.arch,
        device=name,
        bare_fps=bare,
        live_fps=ours,
        ours_ms=1e3 / ours,
        baseline_ms=1e3 / bare,
        ratio=ours / bare,
        latency_ms=latency,
    )
    report(result, args.json)


if __name__ == "__main__":
    main()
