"""Stable Diffusion through diffusers: load a checkpoint, then txt2img or img2img per frame.

The loop reads like a diffusers pipeline (encode prompt -> prepare latents -> denoise ->
decode) and uses the library's parts, but owns the steps Deforum needs and the stock
pipelines hide: Deforum's strength, the img2img noise multiplier, subseeds, latent masks,
per-frame samplers and blended prompt embeddings.
"""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch

from engine import a1111
from engine.backends.base import GenerationRequest, ModelLoadError
from engine.backends.conditioning import SDXLConditioner, TextConditioner
from engine.backends.controlnets import Steering, load_controlnet
from engine.backends.loras import PromptLoras, lora_folders
from engine.backends.schedulers import make_scheduler
from engine.errors import notify
from engine.guidance import clamp_gradient, fit_linear_decoder, guided_steps, linear_decode, losses
from engine.prompts import FramePrompt


def pick_device(requested: str | None) -> torch.device:
    if requested and requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    if requested != "auto":
        return getattr(torch, requested)
    return torch.float16 if device.type in ("cuda", "mps") else torch.float32


class DiffusionBackend:
    def __init__(self, pipeline, model_settings, device: torch.device, dtype: torch.dtype, label: str) -> None:
        self.name = f"diffusers ({label})"
        self.device = device
        self.dtype = dtype
        self.unet = pipeline.unet
        self.vae = pipeline.vae
        self.scheduler_config = dict(pipeline.scheduler.config)
        self.sdxl = getattr(pipeline, "text_encoder_2", None) is not None
        if self.sdxl:
            self.conditioner = SDXLConditioner(pipeline, device, dtype)
        else:
            self.conditioner = TextConditioner(pipeline.tokenizer, pipeline.text_encoder, device, dtype)
        self.latent_channels = self.unet.config.in_channels
        blocks = getattr(self.vae.config, "block_out_channels", None) or self.vae.config.encoder_block_out_channels
        self.vae_scale = 2 ** (len(blocks) - 1)
        self._schedulers: dict[tuple, object] = {}
        self._linear_map: torch.Tensor | None = None  # latents -> RGB, fitted on first use
        self._tiling = (False, 0)  # (circular padding, LoRAs loaded) the convolutions were last set for
        folders = lora_folders(model_settings.model, model_settings.lora_dir)
        self.loras = PromptLoras(pipeline, folders, on_change=self.conditioner.clear)
        self.controlnets: dict[str, object] = {}  # ControlNet name -> the model (None: left out)

    def load_controlnets(self, models: dict[str, str], *, skip_unloadable: bool = False) -> None:
        for model, field in models.items():
            if model in self.controlnets:
                continue
            try:
                self.controlnets[model] = load_controlnet(model, self.dtype, field).to(self.device)
            except ModelLoadError as error:
                if not skip_unloadable:
                    raise
                notify(f"{error.message}: rendering without {field.rsplit('.', 1)[0]} (skip_unloadable_controlnet)")
                self.controlnets[model] = None

    @classmethod
    def load(cls, model: str, model_settings, *, device: str | None = None, label: str | None = None):
        """Load ``model`` (hub id, diffusers folder or single file) onto the device."""
        target = pick_device(device or model_settings.device)
        dtype = pick_dtype(model_settings.dtype, target)
        _quiet_progress_bars()
        pipeline = load_pipeline(model, dtype=dtype, config=model_settings.single_file_config)
        if model_settings.lora:
            fuse_lora(pipeline, model_settings.lora, model_settings.lora_scale)
        pipeline.to(target)
        if model_settings.attention_slicing:
            pipeline.enable_attention_slicing()
        if model_settings.vae_tiling:
            pipeline.vae.enable_tiling()
        if model_settings.cpu_offload and target.type == "cuda":
            pipeline.enable_model_cpu_offload()
        if model_settings.tiny_vae:
            pipeline.vae = load_tiny_vae(model_settings.tiny_vae, dtype).to(target)
        if dtype == torch.float16 and pipeline.vae.config.get("force_upcast", False):
            pipeline.vae.to(torch.float32)  # SD 1.x VAEs overflow in fp16
        if model_settings.channels_last:
            pipeline.unet.to(memory_format=torch.channels_last)
        if model_settings.compile_unet:
            pipeline.unet = torch.compile(pipeline.unet, mode="reduce-overhead")
        return cls(pipeline, model_settings, target, dtype, label or model)

    @torch.no_grad()
    def generate(self, request: GenerationRequest) -> torch.Tensor:
        self.loras.apply(request.prompt.loras)
        self._tile(request.tiling)
        guidance_embedding = self._guidance_embedding(request.cfg)
        classifier_free = request.cfg > 1.0 and guidance_embedding is None
        # A1111's prompt editing: each text encoded once, chosen per step by A1111's step counter
        counted = a1111.total_steps(request.steps, request.sampler)  # two counts a step for second-order samplers
        by_step = request.prompt.by_step(counted)
        conditionings = self._conditionings([frame for _, frame in by_step], request, classifier_free)
        ends = [end for end, _ in by_step]

        scheduler = self._scheduler(request.sampler, request.threshold)
        scheduler.set_timesteps(request.steps, device=self.device)
        noise = self._noise(request)
        start = self._start(request, scheduler, noise)
        if start is None:  # so little strength left that no step runs
            return request.init.to(self.device).clamp(0, 1)
        latents, timesteps, init_latents = start
        keep = self._latent_mask(request.mask) if init_latents is not None else None

        extra = self._step_kwargs(scheduler, request)
        guide = request.guidance if request.guidance is not None and request.guidance.active else None
        guided = guided_steps(guide.settings.grad_inject_timing, len(timesteps)) if guide else set()
        together = request.guidance is None or request.guidance.settings.cond_uncond_sync
        predict = _NoisePrediction(self.unet, scheduler, request.cfg, classifier_free, together, guidance_embedding)
        predict.conditioning = conditionings[0]
        predict.steering = self._steering(request)
        for index, timestep in enumerate(timesteps):
            predict.step = (index, len(timesteps))
            if len(conditionings) > 1:  # A1111 counts a model call a step
                counter = index * (counted // request.steps) // scheduler.order
                predict.conditioning = conditionings[a1111.schedule_index(ends, counter)]
            noise_prediction = predict(latents, timestep)
            if index in guided:
                noise_prediction = self._guided(
                    predict, latents, timestep, noise_prediction, scheduler, request, index, len(timesteps)
                )
            latents = scheduler.step(noise_prediction, timestep, latents, **extra, return_dict=False)[0]
            if keep is not None:
                following = timesteps[index + 1 : index + 2]
                reference = scheduler.add_noise(init_latents, noise, following) if len(following) else init_latents
                latents = keep * reference + (1 - keep) * latents
        return self._decode(latents)

    def _steering(self, request: GenerationRequest) -> Steering | None:
        """The request's ControlNet units with their models (those left out skipped)."""
        units = []
        for control in request.controls:
            if control.model not in self.controlnets:
                self.load_controlnets({control.model: control.field})
            net = self.controlnets[control.model]
            if net is not None:
                units.append((net, control.image.to(self.device, self.dtype), control))
        return Steering(units) if units else None

    def _start(self, request: GenerationRequest, scheduler, noise: torch.Tensor):
        """(latents, timesteps, init latents) to denoise from: the init noised to the strength's
        step (None: no step left), or pure noise."""
        timesteps = scheduler.timesteps
        if request.init is None or request.strength <= 0:
            return noise * scheduler.init_noise_sigma, timesteps, None
        kept_steps = min(int(request.steps * request.denoise), request.steps)
        if kept_steps == 0:
            return None
        start = (request.steps - kept_steps) * scheduler.order
        timesteps = timesteps[start:]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(start)
        init_latents = self._encode(request.init, request.seed)
        latents = scheduler.add_noise(init_latents, noise * request.noise_multiplier, timesteps[:1])
        return latents, timesteps, init_latents

    # -- steps of the loop --------------------------------------------------------------------------

    def _conditionings(self, frames: list[FramePrompt], request, classifier_free: bool) -> list[tuple]:
        """(prompt embeddings, SDXL's added inputs or None) of each prompt, made once per distinct
        prompt: (negative, positive) rows with classifier-free guidance."""
        made: dict[tuple, tuple] = {}
        for frame in frames:
            key = (tuple(frame.positive), tuple(frame.negative))
            if key not in made:
                positive, negative = self.conditioner.frame_embeddings(frame, request.clip_skip)
                embeddings = torch.cat([negative, positive]) if classifier_free else positive
                made[key] = (embeddings, self._size_conditioning(frame, request, classifier_free))
        return [made[tuple(frame.positive), tuple(frame.negative)] for frame in frames]

    def _size_conditioning(self, frame: FramePrompt, request, classifier_free: bool):
        """SDXL's added inputs: the pooled prompt and (original size, crop, target size)."""
        if not self.sdxl:
            return None
        positive, negative = self.conditioner.frame_pooled(frame)
        sizes = torch.tensor([[request.height, request.width, 0, 0, request.height, request.width]], device=self.device)
        pooled = torch.cat([negative, positive]) if classifier_free else positive
        return pooled, sizes.to(self.dtype).repeat(len(pooled), 1)

    def _guided(self, predict, latents, timestep, noise, scheduler, request, step: int, steps: int) -> torch.Tensor:
        """The noise prediction moved by the guidance losses' gradient (see engine.guidance)."""
        guide = request.guidance
        options = guide.settings
        alpha = scheduler.alphas_cumprod.to(self.device)[round(float(timestep))].float()
        sigma = ((1 - alpha) / alpha).sqrt()
        with torch.enable_grad():
            if options.gradient_wrt == "x":  # through the UNet: the gradient with respect to the noisy latents
                variable = latents.detach().float().requires_grad_(True)
                scaled = scheduler.scale_model_input(variable, timestep)
                epsilon = predict(variable.to(self.dtype), timestep).float()
                denoised = (scaled - (1 - alpha).sqrt() * epsilon) / alpha.sqrt()
            else:
                scaled = scheduler.scale_model_input(latents, timestep).float()
                variable = ((scaled - (1 - alpha).sqrt() * noise.float()) / alpha.sqrt()).detach().requires_grad_(True)
                denoised = variable
            loss = losses(self._decode_for_loss(denoised, options.decode_method), guide)
            gradient = -torch.autograd.grad(loss, variable)[0]
        gradient = clamp_gradient(gradient, options, step, steps)
        share = {"cond": request.cfg, "uncond": 1 - request.cfg, "both": 1.0}[options.gradient_add_to]
        if request.cfg <= 1.0:
            share = 1.0  # no classifier-free guidance: one prediction
        return (noise.float() - share * sigma * gradient).to(noise.dtype)

    def _decode_for_loss(self, latents: torch.Tensor, method: str) -> torch.Tensor:
        """RGB in [0, 1] the losses see, differentiable: the VAE, or its fitted linear map."""
        if method == "autoencoder":
            image = self.vae.decode(latents.to(self.vae.dtype) / self.vae.config.scaling_factor, return_dict=False)[0]
            return (image.float() / 2 + 0.5).clamp(0, 1)
        if self._linear_map is None:
            self._linear_map = fit_linear_decoder(self._decode, self.latent_channels, self.device, self.dtype)
        return linear_decode(latents, self._linear_map).clamp(0, 1)

    def _scheduler(self, name: str, threshold: tuple[float, float]):
        key = (name, threshold)
        if key not in self._schedulers:
            self._schedulers[key] = make_scheduler(name, self.scheduler_config, threshold=threshold)
        return self._schedulers[key]

    def _tile(self, tiling: bool) -> None:
        """A1111's seamless tiling: every convolution of the UNet and the VAE pads circularly.
        The modules are walked only when the mode or the loaded LoRAs (new convolutions) change."""
        state = (tiling, len(self.loras.adapters))
        if state == self._tiling:
            return
        mode = "circular" if tiling else "zeros"
        for model in (self.unet, self.vae):
            for module in model.modules():
                if isinstance(module, torch.nn.Conv2d):
                    module.padding_mode = mode
        self._tiling = state

    def _noise(self, request: GenerationRequest) -> torch.Tensor:
        """Seeded on the CPU so a seed gives the same image on every device. With seed resize
        (A1111's) the seed's noise, subseed mixed in, is made at that size and pasted centred."""
        shape = (1, self.latent_channels, request.height // self.vae_scale, request.width // self.vae_scale)
        from_w, from_h = request.seed_resize_from
        resized = from_w > 0 and from_h > 0
        source = (*shape[:2], from_h // self.vae_scale, from_w // self.vae_scale) if resized else shape
        noise = seeded_noise(request.seed, source)
        if request.subseed_strength > 0 and request.subseed >= 0:
            noise = slerp(request.subseed_strength, noise, seeded_noise(request.subseed, source))
        if source != shape:
            noise = paste_centred(noise, seeded_noise(request.seed, shape))
        return noise.to(self.device, self.dtype)

    def _encode(self, image: torch.Tensor, seed: int) -> torch.Tensor:
        pixels = (image.to(self.device, self.vae.dtype) * 2 - 1).clamp(-1, 1)
        encoded = self.vae.encode(pixels)
        if hasattr(encoded, "latent_dist"):
            latents = encoded.latent_dist.sample(generator=torch.Generator().manual_seed(seed + 1))
        else:  # a tiny autoencoder gives the latents themselves
            latents = encoded.latents
        return (latents * self.vae.config.scaling_factor).to(self.dtype)

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        latents = latents.to(self.vae.dtype) / self.vae.config.scaling_factor
        image = self.vae.decode(latents, return_dict=False)[0]
        return (image.float() / 2 + 0.5).clamp(0, 1)

    def _latent_mask(self, mask: torch.Tensor | None) -> torch.Tensor | None:
        if mask is None:
            return None
        size = (mask.shape[-2] // self.vae_scale, mask.shape[-1] // self.vae_scale)
        return torch.nn.functional.interpolate(mask.to(self.device, self.dtype), size=size, mode="area")

    def _step_kwargs(self, scheduler, request: GenerationRequest) -> dict:
        accepted = scheduler.step.__code__.co_varnames
        extra = {}
        if "eta" in accepted:
            extra["eta"] = request.ddim_eta
        if "generator" in accepted:
            extra["generator"] = torch.Generator().manual_seed(request.seed + 2)
        return extra

    def _guidance_embedding(self, cfg: float) -> torch.Tensor | None:
        """LCM-distilled UNets take the guidance scale as an embedding instead of two passes."""
        dimension = self.unet.config.get("time_cond_proj_dim")
        if dimension is None:
            return None
        w = torch.tensor([cfg - 1.0]) * 1000.0
        half = dimension // 2
        frequencies = torch.exp(torch.arange(half) * -(math.log(10000.0) / (half - 1)))
        angles = w[:, None] * frequencies[None, :]
        embedding = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
        if dimension % 2:
            embedding = torch.nn.functional.pad(embedding, (0, 1))
        return embedding.to(self.device, self.dtype)


def seeded_noise(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)


def paste_centred(noise: torch.Tensor, canvas: torch.Tensor) -> torch.Tensor:
    """``noise`` pasted centred on ``canvas``, cropped where larger: A1111's offsets, exactly."""
    (height, width), (canvas_height, canvas_width) = noise.shape[-2:], canvas.shape[-2:]
    dx, dy = (canvas_width - width) // 2, (canvas_height - height) // 2
    w = width if dx >= 0 else width + 2 * dx
    h = height if dy >= 0 else height + 2 * dy
    tx, ty, sx, sy = max(dx, 0), max(dy, 0), max(-dx, 0), max(-dy, 0)
    canvas[..., ty : ty + h, tx : tx + w] = noise[..., sy : sy + h, sx : sx + w]
    return canvas


def slerp(t: float, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between two noise tensors (A1111's subseed mixing)."""
    a_unit, b_unit = a / a.norm(), b / b.norm()
    dot = (a_unit * b_unit).sum().clamp(-1, 1)
    if dot.abs() > 0.9995:
        return (1 - t) * a + t * b
    omega = torch.acos(dot)
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


# -- loading -------------------------------------------------------------------------------------


def fuse_lora(pipeline, name: str, scale: float) -> None:
    """Fold a LoRA into the UNet's (and text encoder's) weights: no per-step cost afterwards."""
    path = Path(name).expanduser()
    source = (
        {"pretrained_model_name_or_path_or_dict": str(path.parent), "weight_name": path.name}
        if path.is_file()
        else {"pretrained_model_name_or_path_or_dict": name}
    )
    try:
        pipeline.load_lora_weights(**source, adapter_name="driftwave")
        pipeline.fuse_lora(lora_scale=scale)
        pipeline.unload_lora_weights()
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, ImportError) as error:
        raise ModelLoadError(
            f"cannot load the LoRA {name}: {str(error).splitlines()[0]}",
            field="model.lora",
            hint="give a LoRA for this model's architecture (hub id, folder or .safetensors), or leave it empty",
        ) from None


def load_tiny_vae(name: str, dtype: torch.dtype):
    """An AutoencoderTiny (hub id or folder) to use in place of the model's VAE."""
    from diffusers import AutoencoderTiny

    try:
        return AutoencoderTiny.from_pretrained(name, dtype=dtype)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as error:
        raise ModelLoadError(
            f"cannot load the tiny autoencoder {name}: {str(error).splitlines()[0]}",
            field="model.tiny_vae",
            hint="give an AutoencoderTiny hub id or folder (e.g. madebyollin/taesd for SD 1.x/2.x), or leave it empty",
        ) from None


def load_pipeline(model: str, *, dtype: torch.dtype, config: str = ""):
    """A diffusers pipeline from a hub id, a diffusers folder or a single .safetensors/.ckpt file."""
    from diffusers import DiffusionPipeline, StableDiffusionPipeline

    path = Path(model).expanduser()
    try:
        if path.is_file():
            if path.suffix.lower() not in (".safetensors", ".ckpt"):
                raise ModelLoadError(
                    f"{path.name} is not a checkpoint",
                    field="model.model",
                    hint="use a .safetensors or .ckpt file, a diffusers folder or a Hugging Face id",
                )
            options = {"config": config} if config else {}
            return StableDiffusionPipeline.from_single_file(str(path), dtype=dtype, **options)
        if path.is_dir():
            return DiffusionPipeline.from_pretrained(str(path), dtype=dtype, safety_checker=None)
        if model.startswith((".", "/", "~")) or model.count("/") > 1 or path.suffix in (".safetensors", ".ckpt"):
            raise ModelLoadError(
                f"{model} does not exist",
                field="model.model",
                hint="check the path, or render with --set backend=preview to see the motion without a model",
            )
        return _from_hub(model, dtype)
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as error:
        raise ModelLoadError(
            f"cannot load {model}: {str(error).splitlines()[0]}",
            field="model.model",
            hint="point model.model at a Stable Diffusion checkpoint, or render with --set backend=preview",
        ) from None


def _from_hub(model_id: str, dtype: torch.dtype):
    from diffusers import DiffusionPipeline

    try:
        return DiffusionPipeline.from_pretrained(model_id, dtype=dtype, safety_checker=None, local_files_only=True)
    except (OSError, ValueError):
        pass  # not downloaded yet
    if os.environ.get("HF_HUB_OFFLINE") == "1" or not hub_reachable():
        raise ModelLoadError(
            f"{model_id} is not downloaded and huggingface.co cannot be reached from here",
            field="model.model",
            hint="download it on a connected machine (huggingface-cli download), point model.model at a local "
            "checkpoint, or render with --set backend=preview",
        )
    return DiffusionPipeline.from_pretrained(model_id, dtype=dtype, safety_checker=None)


def hub_reachable(timeout: float = 3.0) -> bool:
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _quiet_progress_bars() -> None:
    import warnings

    from diffusers.utils import logging as diffusers_logging

    warnings.filterwarnings("ignore", module="torchsde")  # float rounding notes from the SDE samplers
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()


class _NoisePrediction:
    """The UNet's noise prediction at a step, with classifier-free guidance: one batch of two
    (``together``) or two passes (half the memory). ``conditioning``: (embeddings, SDXL's added
    conditioning) in effect at this step."""

    def __init__(self, unet, scheduler, cfg: float, classifier_free: bool, together: bool, guidance_embedding) -> None:
        self.unet, self.scheduler, self.cfg = unet, scheduler, cfg
        self.classifier_free, self.together, self.guidance_embedding = classifier_free, together, guidance_embedding
        self.conditioning: tuple = (None, None)
        self.steering: Steering | None = None  # ControlNet units
        self.step = (0, 1)  # (index, total) of the step being taken, for the units' step ranges

    def __call__(self, latents: torch.Tensor, timestep) -> torch.Tensor:
        embeddings = self.conditioning[0]
        model_input = self.scheduler.scale_model_input(latents, timestep)
        if self.classifier_free and self.together:
            noise_prediction = self._unet(torch.cat([model_input] * 2), timestep, embeddings, slice(None))
        elif self.classifier_free:
            sides = embeddings.chunk(2)
            noise_prediction = torch.cat(
                [self._unet(model_input, timestep, side, slice(row, row + 1)) for row, side in enumerate(sides)]
            )
        else:
            noise_prediction = self._unet(model_input, timestep, embeddings, slice(None))
        if self.classifier_free:
            unconditional, conditional = noise_prediction.chunk(2)
            noise_prediction = unconditional + self.cfg * (conditional - unconditional)
        return noise_prediction

    def _unet(self, model_input: torch.Tensor, timestep, conditioning: torch.Tensor, rows: slice) -> torch.Tensor:
        inputs = {}
        added = self.conditioning[1]
        if added is not None:  # SDXL: the pooled prompt and the sizes, for the same rows
            pooled, sizes = added
            inputs["added_cond_kwargs"] = {"text_embeds": pooled[rows], "time_ids": sizes[rows]}
        if self.steering is not None:
            prompt_rows = [row == 1 for row in range(2)][rows] if self.classifier_free else [True]
            down, mid = self.steering.residuals(
                model_input, timestep, conditioning, inputs.get("added_cond_kwargs"), prompt_rows, self.step
            )
            if down is not None:
                inputs |= {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        return self.unet(
            model_input,
            timestep,
            encoder_hidden_states=conditioning,
            timestep_cond=self.guidance_embedding,
            return_dict=False,
            **inputs,
        )[0]
