"""Live mode: frames per second and audio-to-frame latency, side by side with a bare loop.

1. The preview backend at 512x512 on the CPU, the demo track played in real time: as fast as it
   goes (a target far above what it reaches) and at a 15 fps target.
2. A random-weight pipeline (``--arch sd-turbo`` on a GPU: the sd-turbo architecture; ``--arch
   tiny``: the test pipeline, to check the bench anywhere) at 512x512, img2img with one
   denoising step (2 steps at strength 0.5), fed back frame to frame: the live loop (schedules,
   warp, colour match, grain, our sampler loop) against a bare diffusers
   StableDiffusionImg2ImgPipeline loop with the prompt embedded once, in the same run.

3. ``--serve``: the live page's path over loopback, preview backend at 512x512: the demo track's
   PCM sent up in real time by a page (aiohttp's WebSocket client standing in for the browser:
   2048-sample blocks stamped with its clock), frames back through engine/serve.py (JPEG, newest
   only): frames per second the page receives and audio (block sent) to picture (received) latency,
   against the same loop fed the same blocks without serving (latency to the frame being ready).

Run: .venv/bin/python bench/live.py [--arch tiny|sd-turbo] [--seconds 8] [--serve] [--json]
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


def served_rate(seconds: float, serve: bool, jitter_ms: float = 40.0) -> tuple[float, float]:
    """(frames per second, mean latency in ms) of the preview loop fed pushed PCM in real time:
    with ``serve`` as the page receives them, else as the loop makes them."""
    import asyncio
    import json
    import socket
    import struct
    import threading

    from audio.live import PushedSource
    from engine.images import to_array
    from engine.serve import LiveServer

    settings = settings_for("preview", 240, jitter_ms=jitter_ms)
    track = load_audio(ROOT / "presets" / "demo_track.flac")
    live = settings.live
    source = PushedSource(settings.audio.filters, live.target_fps, rate=track.rate, jitter=live.jitter_ms / 1000)
    session = LiveSession(settings, load_backend(ModelSettings(backend="preview")), source)
    received: list[float] = []  # latencies, ms
    server = None
    if serve:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = LiveServer(source, port=port, say=lambda line: None)
        server.start()
        session.on_frame = lambda status, image: server.publish(
            to_array(image), {"frame": status.frame, "stamp": status.audio_stamp, "audio": status.audio}
        )
    else:
        session.on_frame = lambda status, image: (
            received.append(time.perf_counter() * 1e3 - status.audio_stamp) if status.audio_stamp else None
        )
    stop = threading.Event()

    async def page() -> None:
        import aiohttp

        async with aiohttp.ClientSession() as client:
            socket_ = await client.ws_connect(f"ws://127.0.0.1:{server.port}/ws?token={server.token}")
            await socket_.send_str(json.dumps({"type": "hello", "rate": track.rate, "audio": True}))

            async def listen() -> None:
                async for message in socket_:
                    length = struct.unpack(">I", message.data[:4])[0]
                    stamp = json.loads(message.data[4 : 4 + length])["stamp"]
                    if stamp is not None:
                        received.append(time.perf_counter() * 1e3 - stamp)

            listening = asyncio.ensure_future(listen())
            await send_blocks(lambda block, stamp: socket_.send_bytes(struct.pack("<d", stamp) + block.tobytes()))
            listening.cancel()
            await socket_.close()

    async def send_blocks(send) -> None:
        started = time.perf_counter()
        for index, start in enumerate(range(0, len(track.samples), 2048)):
            if stop.is_set():
                break
            await send(track.samples[start : start + 2048].astype("<f4"), time.perf_counter() * 1e3)
            await asyncio.sleep(max(started + (index + 1) * 2048 / track.rate - time.perf_counter(), 0))

    async def direct(block, stamp) -> None:
        source.push(block, stamp)

    feeder = threading.Thread(target=lambda: asyncio.run(page() if serve else send_blocks(direct)), daemon=True)
    try:
        feeder.start()
        deadline = time.monotonic() + 60
        while not received:  # warm up until a frame that read the pushed audio has arrived
            assert time.monotonic() < deadline, "no frame read the pushed audio within a minute"
            session.step()
        received.clear()
        session.run(duration=seconds)
        stop.set()
        feeder.join(timeout=30)
    finally:
        if server is not None:
            server.close()
        source.close()
    return len(received) / seconds, sum(received) / max(len(received), 1)


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument(
        "--arch", choices=["tiny", "sd-turbo"], default="sd-turbo" if torch.cuda.is_available() else "tiny"
    )
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--serve", action="store_true", help="measure the live page's path over loopback")
    parser.add_argument("--jitter-ms", type=float, default=40.0, help="with --serve: the page sound's jitter buffer")
    args = parser.parse_args()
    if args.serve:
        alone, alone_latency = served_rate(args.seconds, serve=False, jitter_ms=args.jitter_ms)
        shown, latency = served_rate(args.seconds, serve=True, jitter_ms=args.jitter_ms)
        print(f"preview {SIZE}x{SIZE}, the demo track's PCM pushed in real time:")
        print(f"  the loop alone         {alone:6.1f} fps, audio to frame ready  {alone_latency:5.0f} ms")
        print(f"  served to a page       {shown:6.1f} fps, audio to frame shown  {latency:5.0f} ms")
        print(f"  frames shown / frames made alone: {shown / alone:.0%}")
        result = {"size": SIZE, "jitter_ms": args.jitter_ms, "alone_fps": alone, "served_fps": shown}
        result |= {"ratio": shown / alone}
        result |= {"alone_latency_ms": alone_latency, "served_latency_ms": latency}
        result |= {"ours_ms": 1e3 / shown, "baseline_ms": 1e3 / alone}
        report(result, args.json)
        return
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
