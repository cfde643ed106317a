"""Gradient conditioning: the cost of a guided sampling step relative to an unguided one.

The tiny test pipeline on the CPU (and an SD-1.5-architecture pipeline with random weights on a
GPU, where there is one — not built here), 10 steps with every step guided by the mean loss,
for gradient_wrt x0_pred and x and both decode methods, side by side with the same request
unguided. Baseline: the same request unguided (there is no Deforum counterpart: Deforum's
A1111 extension has no gradient conditioning). Run: .venv/bin/python bench/guidance.py [--json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import arguments, median_seconds, report
from engine.backends import GenerationRequest, load_backend
from engine.guidance import GuidanceRequest
from engine.prompts import compile_prompts
from engine.schedule import Timeline
from engine.settings import GuidanceSettings, ModelSettings

SIZE, STEPS, REPEATS = 128, 10, 5


def seconds(backend, guidance) -> float:
    prompt = compile_prompts({"0": "a red fox"}, Timeline(1)).at(0)
    request = GenerationRequest(
        prompt=prompt, seed=1, width=SIZE, height=SIZE, steps=STEPS, cfg=3.0, sampler="euler", guidance=guidance
    )
    return median_seconds(lambda _: backend.generate(request), REPEATS)


def main() -> None:
    options = arguments(__doc__.splitlines()[0]).parse_args()
    backend = load_backend(ModelSettings(backend="tiny"))
    print(f"tiny pipeline, {SIZE}x{SIZE}, {STEPS} steps, cfg 3 (two UNet passes a step), median of {REPEATS}")
    plain = seconds(backend, None)
    print(f"  unguided                     {plain / STEPS * 1e3:7.1f} ms a step")
    rows = {}
    for wrt in ("x0_pred", "x"):
        for decode in ("linear", "autoencoder"):
            guidance = GuidanceSettings(gradient_wrt=wrt, decode_method=decode, grad_inject_timing="none")
            guided = seconds(backend, GuidanceRequest(guidance, {"mean_scale": 1.0}))
            rows[f"{wrt}/{decode}"] = {"ms_a_step": guided / STEPS * 1e3, "vs_unguided": guided / plain}
            print(f"  {wrt:7} {decode:11}          {guided / STEPS * 1e3:7.1f} ms a step = {guided / plain:.2f}x")
    worst = max(rows.values(), key=lambda row: row["ms_a_step"])
    report(
        {"ours_ms": worst["ms_a_step"], "baseline_ms": plain / STEPS * 1e3, "unit": "ms a step", "guided": rows},
        options.json,
    )


if __name__ == "__main__":
    main()
