"""Sweeps on Ray: the same variants in a plain loop, on 1 and on 2 local Ray workers, in one run.

By default the random-weight test pipeline (``tiny``: real diffusion steps, so the variants are
work, not only Ray's overhead). The baseline is what a user does without Ray: one process, the
backend loaded once, ``render()`` for each variant in turn (torch on one thread, as Ray gives each
CPU worker). Against it:
``engine.sweep.run_batch`` with a local runtime of 1 and of 2 CPU workers (each a Ray task per
variant, the model loaded once per worker process). Reported: each wall time, the scaling
efficiency t(1 worker) / (2 * t(2 workers)), Ray's overhead per variant (t(1 worker) - t(loop))
/ variants, and how much of it is the runtime's start alone. The frames of every variant must
equal the loop's, pixel for pixel.

Run: .venv/bin/python bench/sweep.py [--variants 8] [--frames 24] [--size 64] [--backend tiny|preview] [--json]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import arguments, report  # noqa: E402
from engine.backends import load_backend  # noqa: E402
from engine.errors import collecting_notices  # noqa: E402
from engine.outputs import written_frames  # noqa: E402
from engine.ray_runtime import ray_runtime  # noqa: E402
from engine.render import prepared, render  # noqa: E402
from engine.sweep import RayOptions, new_batch, run_batch  # noqa: E402
from engine.variants import parse_vary, preset_loader, sweep_variants  # noqa: E402

PRESET = """
[animation]
animation_mode = "2D"
max_frames = {frames}
[image]
W = {size}
H = {size}
[model]
backend = "{backend}"
[sampling]
steps = 4
[motion]
translation_x = "0:(3*sin(t/4))"
zoom = "0:(1.02)"
noise_schedule = "0:(0.03)"
[coherence]
color_coherence = "LAB"
[video]
skip_video_creation = true
[batch]
outdir = "{outdir}"
batch_name = "bench"
[prompts]
0 = "a lighthouse in a storm"
"""


def variants_in(folder: Path, count: int, frames: int, size: int, backend: str):
    preset = folder / "bench.toml"
    preset.write_text(PRESET.format(frames=frames, size=size, backend=backend, outdir=folder / "out"))
    with collecting_notices():
        return sweep_variants(preset_loader(preset), [], [parse_vary(f"seed=1..{count}")], paired=False, check=prepared)


def plain_loop(variants, folder: Path) -> tuple[float, float, list[list[Path]]]:
    """The baseline: every variant in turn in this process, one backend. (total, median seconds
    of one variant's render, frames)."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    backend = load_backend(variants[0].settings.model)
    runs, each = [], []
    with collecting_notices():
        for variant in variants:
            batch = variant.settings.batch.model_copy(update={"outdir": str(folder)})
            began = time.perf_counter()
            runs.append(render(variant.settings.model_copy(update={"batch": batch}), backend=backend).frames)
            each.append(time.perf_counter() - began)
    return time.perf_counter() - start, statistics.median(each), runs


def on_ray(variants, workers: int) -> tuple[float, float, list[list[Path]]]:
    """(total, median seconds of one variant's task as its record says, frames)."""
    start = time.perf_counter()
    batch = new_batch("sweep", variants)
    with collecting_notices():
        run_batch(batch, RayOptions(workers=workers, gpus_per_run=0))
    spent = time.perf_counter() - start
    assert all(record.status == "done" for record in batch.records.values()), batch.records
    each = statistics.median(record.seconds for record in batch.records.values())
    return spent, each, [written_frames(batch.root / variant.name) for variant in variants]


def runtime_start(folder: Path, workers: int) -> float:
    start = time.perf_counter()
    with ray_runtime(None, cpus=workers, logs=folder / "logs"):
        pass
    return time.perf_counter() - start


def same_frames(first: list[list[Path]], second: list[list[Path]]) -> bool:
    return all(
        len(a) == len(b) > 0
        and all(np.array_equal(cv2.imread(str(x)), cv2.imread(str(y))) for x, y in zip(a, b, strict=True))
        for a, b in zip(first, second, strict=True)
    )


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=8)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--backend", choices=("preview", "tiny"), default="tiny")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        variants = variants_in(folder, args.variants, args.frames, args.size, args.backend)
        loop, loop_each, loop_frames = plain_loop(variants, folder / "loop")
        one, one_each, one_frames = on_ray(variants, 1)
        two, _, two_frames = on_ray(variants, 2)
        start = runtime_start(folder, 2)
        equal = same_frames(loop_frames, one_frames) and same_frames(loop_frames, two_frames)
    assert equal, "a Ray variant's frames differ from the plain loop's"
    count = args.variants
    overhead = (one - loop) / count
    beyond_start = (one - start - loop) / count
    print(f"{count} variants x {args.frames} frames at {args.size}x{args.size}, {args.backend} backend")
    print(f"  plain loop, one process          {loop:7.2f} s")
    print(f"  Ray, 1 worker                    {one:7.2f} s")
    print(f"  Ray, 2 workers                   {two:7.2f} s   (loop / 2 workers: {loop / two:.2f}x)")
    print(f"  scaling efficiency 1 -> 2        {one / (2 * two):7.2f}")
    print(f"  Ray overhead per variant         {overhead * 1000:7.0f} ms")
    print(f"    of which the runtime's start   {start:7.2f} s once; the rest {beyond_start * 1000:.0f} ms a variant")
    print(f"  one variant: {loop_each:.2f} s in the loop, {one_each:.2f} s in a Ray task (its worker warm or not)")
    print("  frames equal to the loop's: yes")
    result = {
        "ours_ms": two * 1000,
        "baseline_ms": loop * 1000,
        "one_worker_ms": one * 1000,
        "scaling_efficiency": one / (2 * two),
        "overhead_per_variant_ms": overhead * 1000,
        "runtime_start_ms": start * 1000,
        "overhead_beyond_start_per_variant_ms": beyond_start * 1000,
        "variant_in_loop_ms": loop_each * 1000,
        "variant_in_task_ms": one_each * 1000,
        "variants": count,
        "frames": args.frames,
        "backend": args.backend,
        "frames_equal": equal,
    }
    report(result, args.json)


if __name__ == "__main__":
    main()
