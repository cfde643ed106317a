"""Driftwave's own denoising loop gives diffusers' images: txt2img and img2img, per sampler.

The reference is diffusers' ``StableDiffusionPipeline`` / ``StableDiffusionImg2ImgPipeline``
built from the backend's own components (UNet, VAE, text encoder, tokenizer) with the scheduler
class and config the sampler name stands for, built here from the model's scheduler config as
diffusers' docs do (``Scheduler.from_config(config, **overrides)``), not through Driftwave.

Both sides get the same random numbers. Driftwave draws from three generators: the initial
noise from ``seed``, the VAE's latent sample from ``seed + 1``, the ancestral samplers' noise
from ``seed + 2``; diffusers draws all three from the one ``generator``. So diffusers gets the
initial latents directly (``latents=`` for txt2img; for img2img the encoded, scaled init
latents as the 4-channel ``image``, made here with diffusers' own functions), its generator is
seeded with ``seed`` (the img2img noise), and it is reseeded to ``seed + 2`` when the first
UNet call starts, before any step draws. Deforum's ``strength`` is the share of the init image
kept: Deforum strength s is diffusers' ``strength=1 - s``.
"""

from __future__ import annotations

import diffusers
import pytest
import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import retrieve_latents

from engine.backends import GenerationRequest, load_backend
from engine.backends.schedulers import make_scheduler
from engine.prompts import PromptOptions, compile_prompts
from engine.schedule import Timeline
from engine.settings import ModelSettings

SEED = 11
SIZE = 64
POSITIVE = "a red fox in the snow"
NEGATIVE = "blurry, grey"

# sampler -> (diffusers scheduler class, the overrides diffusers' docs give for that A1111 sampler)
REFERENCE = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "heun": ("HeunDiscreteScheduler", {}),
}
# (mode, Deforum strength, steps): img2img at 0.35 keeps int(8 * 0.65) = 5 of 8 steps, at 0.65 two
MODES = {"txt2img": (0.0, 4), "img2img 0.35": (0.35, 8), "img2img 0.65": (0.65, 8)}

CASES = [
    pytest.param(mode, sampler, cfg, negative, id=f"{mode}-{sampler}-cfg{cfg}-{'neg' if negative else 'noneg'}")
    for mode in MODES
    for sampler in REFERENCE
    for cfg in (1.0, 7.0)
    for negative in (False, True)
]
CASES.append(pytest.param("img2img 0.35", "dpmpp_2m", 12.0, True, id="img2img 0.35-dpmpp_2m-cfg12-neg"))


@pytest.fixture(scope="module")
def backend():
    return load_backend(ModelSettings(backend="tiny"), device="cpu")


@pytest.fixture(scope="module")
def init_image() -> torch.Tensor:
    """A smooth picture with some texture, (1, 3, H, W) in [0, 1]."""
    ramp = torch.linspace(0, 1, SIZE)
    texture = torch.rand((1, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(5))
    picture = torch.stack(
        [
            ramp.view(1, -1).expand(SIZE, SIZE),
            ramp.view(-1, 1).expand(SIZE, SIZE),
            1 - ramp.view(1, -1).expand(SIZE, SIZE),
        ]
    )
    return (0.7 * picture.unsqueeze(0) + 0.3 * texture).clamp(0, 1)


class UNetCalls:
    """Records each UNet call's timestep and input; optionally reseeds a generator at the first call."""

    def __init__(self, unet) -> None:
        self.timesteps: list[float] = []
        self.inputs: list[torch.Tensor] = []
        self.reseed: tuple[torch.Generator, int] | None = None
        self.handle = unet.register_forward_pre_hook(self._record)

    def _record(self, module, args) -> None:
        if self.reseed is not None and not self.timesteps:
            generator, seed = self.reseed
            generator.manual_seed(seed)
        self.timesteps.append(float(args[1]))
        self.inputs.append(args[0].detach().clone())

    def take(self) -> tuple[list[float], list[torch.Tensor]]:
        taken = (self.timesteps, self.inputs)
        self.timesteps, self.inputs, self.reseed = [], [], None
        return taken


@pytest.fixture
def calls(backend):
    recorder = UNetCalls(backend.unet)
    yield recorder
    recorder.handle.remove()


def reference_scheduler(backend, sampler: str):
    class_name, overrides = REFERENCE[sampler]
    return getattr(diffusers, class_name).from_config(backend.scheduler_config, **overrides)


def reference_pipeline(backend, sampler: str, img2img: bool):
    pipeline_class = diffusers.StableDiffusionImg2ImgPipeline if img2img else diffusers.StableDiffusionPipeline
    pipeline = pipeline_class(
        vae=backend.vae,
        text_encoder=backend.conditioner.text_encoder,
        tokenizer=backend.conditioner.tokenizer,
        unet=backend.unet,
        scheduler=reference_scheduler(backend, sampler),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def frame_prompt(negative: bool):
    options = PromptOptions(negative_prompt=NEGATIVE if negative else "")
    return compile_prompts({"0": POSITIVE}, Timeline(1), options=options).at(0)


@pytest.mark.parametrize("sampler", list(REFERENCE))
def test_each_sampler_name_builds_the_scheduler_diffusers_documents(backend, sampler):
    ours = make_scheduler(sampler, backend.scheduler_config)
    theirs = reference_scheduler(backend, sampler)
    assert type(ours) is type(theirs) and type(ours).__name__ == REFERENCE[sampler][0]
    public = lambda config: {key: value for key, value in config.items() if not key.startswith("_")}  # noqa: E731
    assert public(ours.config) == public(theirs.config)
    config = ours.config
    assert config.timestep_spacing == backend.scheduler_config["timestep_spacing"] == "leading"  # the model's own
    assert config.steps_offset == 1 and config.beta_schedule == "scaled_linear"
    assert config.prediction_type == "epsilon"
    if sampler != "euler_a":  # EulerAncestral has no Karras option
        assert config.use_karras_sigmas is False
    if sampler == "dpmpp_2m":
        assert (config.algorithm_type, config.solver_order, config.solver_type) == ("dpmsolver++", 2, "midpoint")
        assert config.final_sigmas_type == "zero" and config.lower_order_final is True


@pytest.mark.parametrize(("mode", "sampler", "cfg", "negative"), CASES)
def test_the_image_equals_diffusers(backend, calls, init_image, mode, sampler, cfg, negative):
    strength, steps = MODES[mode]
    img2img = strength > 0
    request = GenerationRequest(
        prompt=frame_prompt(negative),
        seed=SEED,
        width=SIZE,
        height=SIZE,
        steps=steps,
        cfg=cfg,
        sampler=sampler,
        init=init_image if img2img else None,
        strength=strength,
    )
    ours = backend.generate(request)
    our_timesteps, our_inputs = calls.take()

    pipeline = reference_pipeline(backend, sampler, img2img)
    generator = torch.Generator().manual_seed(SEED)
    options = {
        "prompt": POSITIVE,
        "negative_prompt": NEGATIVE if negative else None,
        "num_inference_steps": steps,
        "guidance_scale": cfg,
        "generator": generator,
        "output_type": "pt",
    }
    if img2img:
        pixels = pipeline.image_processor.preprocess(init_image)
        encoded = pipeline.vae.encode(pixels)
        sample = retrieve_latents(encoded, generator=torch.Generator().manual_seed(SEED + 1))
        options.update(image=sample * pipeline.vae.config.scaling_factor, strength=1 - strength)
    else:
        shape = (1, 4, SIZE // 8, SIZE // 8)
        options.update(
            latents=torch.randn(shape, generator=torch.Generator().manual_seed(SEED)), height=SIZE, width=SIZE
        )
    calls.reseed = (generator, SEED + 2)
    with torch.no_grad():
        theirs = pipeline(**options).images
    their_timesteps, their_inputs = calls.take()

    scheduler = pipeline.scheduler
    if img2img:
        expected, _ = pipeline.get_timesteps(steps, 1 - strength, "cpu")
    else:
        expected = scheduler.timesteps
    expected = [float(t) for t in expected]
    assert len(expected) == (steps if not img2img else int(steps * (1 - strength))) * scheduler.order - (
        scheduler.order - 1
    )
    assert our_timesteps == their_timesteps == expected
    assert max((a - b).abs().max().item() for a, b in zip(our_inputs, their_inputs, strict=True)) == 0.0
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    difference = (ours - theirs).abs().max().item()
    assert difference == 0.0, f"max |driftwave - diffusers| = {difference:.3g}"
