"""Sampler names -> diffusers schedulers, built from the model's own scheduler config.

A1111 names with no exact diffusers twin use the closest scheduler and are listed in
``APPROXIMATE`` so the engine can say so once.
"""

from __future__ import annotations

from typing import Any

# canonical name -> (scheduler class name, config overrides)
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "lms_karras": ("LMSDiscreteScheduler", {"use_karras_sigmas": True}),
    "dpm2": ("KDPM2DiscreteScheduler", {}),
    "dpm2_karras": ("KDPM2DiscreteScheduler", {"use_karras_sigmas": True}),
    "dpm2_a": ("KDPM2AncestralDiscreteScheduler", {}),
    "dpm2_a_karras": ("KDPM2AncestralDiscreteScheduler", {"use_karras_sigmas": True}),
    "dpmpp_2s_a": ("DPMSolverSinglestepScheduler", {"solver_order": 2}),
    "dpmpp_2s_a_karras": ("DPMSolverSinglestepScheduler", {"solver_order": 2, "use_karras_sigmas": True}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpmpp_2m_karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "dpmpp_sde": ("DPMSolverSDEScheduler", {}),
    "dpmpp_sde_karras": ("DPMSolverSDEScheduler", {"use_karras_sigmas": True}),
    "dpmpp_2m_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    "dpmpp_2m_sde_karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "dpmpp_3m_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 3}),
    "dpmpp_3m_sde_karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 3, "use_karras_sigmas": True},
    ),
    "ddim": ("DDIMScheduler", {"clip_sample": False, "set_alpha_to_one": False}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "deis": ("DEISMultistepScheduler", {}),
    "lcm": ("LCMScheduler", {}),
    "tcd": ("TCDScheduler", {}),
}
# diffusers has no ancestral single-step DPM++: the deterministic one stands in
APPROXIMATE = {"dpmpp_2s_a": "DPM++ 2S a runs as DPM++ 2S (no ancestral noise)"}


def make_scheduler(name: str, base_config: dict[str, Any], *, threshold: tuple[float, float] = (0.0, 0.0)):
    """A fresh scheduler ``name`` from ``base_config`` (the model's scheduler config).

    ``threshold`` = (dynamic percentile, static max): applied where the scheduler supports
    thresholding (DDIM, DPM-Solver, UniPC...), ignored elsewhere.
    """
    import diffusers

    class_name, overrides = SCHEDULERS[name]
    scheduler_class = getattr(diffusers, class_name)
    config = {key: value for key, value in base_config.items() if not key.startswith("_")}
    config.update(overrides)
    dynamic, static = threshold
    if (dynamic or static) and "thresholding" in scheduler_class.__init__.__code__.co_varnames:
        config.update(thresholding=True, dynamic_thresholding_ratio=dynamic or 0.995, sample_max_value=static or 1.0)
    return scheduler_class.from_config(config)
