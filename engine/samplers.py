"""Sampler names: Driftwave's canonical names and every spelling users bring from Deforum.

The backend maps canonical names to diffusers schedulers; settings and the Deforum import
only need to know which names exist and how the other spellings map onto them.
"""

from __future__ import annotations

SAMPLERS = (
    "euler",
    "euler_a",
    "heun",
    "lms",
    "lms_karras",
    "dpm2",
    "dpm2_karras",
    "dpm2_a",
    "dpm2_a_karras",
    "dpmpp_2s_a",
    "dpmpp_2s_a_karras",
    "dpmpp_2m",
    "dpmpp_2m_karras",
    "dpmpp_sde",
    "dpmpp_sde_karras",
    "dpmpp_2m_sde",
    "dpmpp_2m_sde_karras",
    "dpmpp_3m_sde",
    "dpmpp_3m_sde_karras",
    "ddim",
    "pndm",
    "unipc",
    "deis",
    "lcm",
    "tcd",
)

# spellings from the A1111 UI and the Deforum notebook -> canonical name
_ALIASES = {
    "euler ancestral": "euler_a",
    "euler_ancestral": "euler_a",
    "k_euler_a": "euler_a",
    "k_euler": "euler",
    "klms": "lms",
    "k_lms": "lms",
    "dpm2 ancestral": "dpm2_a",
    "dpm2_ancestral": "dpm2_a",
    "k_dpm_2": "dpm2",
    "k_dpm_2_a": "dpm2_a",
    "plms": "pndm",
    "k_heun": "heun",
}
# A1111 samplers diffusers has no equivalent for -> the closest one (imports warn)
APPROXIMATIONS = {
    "dpm_fast": "dpmpp_2m",
    "dpm_adaptive": "dpmpp_2m",
    "restart": "dpmpp_2m_karras",
    "dpmpp_2m_sde_exponential": "dpmpp_2m_sde",
    "dpmpp_2m_sde_heun": "dpmpp_2m_sde",
    "dpmpp_2m_sde_heun_karras": "dpmpp_2m_sde_karras",
    "dpmpp_2m_sde_heun_exponential": "dpmpp_2m_sde",
    "dpmpp_3m_sde_exponential": "dpmpp_3m_sde",
}


def sampler_key(name: str) -> str:
    """A spelling-insensitive key: ``DPM++ 2M`` -> ``dpmpp_2m``."""
    return name.strip().lower().replace("++", "pp").replace("+", "p").replace(" ", "_").replace("-", "_")


def canonical_sampler(name: str) -> str | None:
    """The canonical name for any spelling (``"DPM++ 2M Karras"`` -> ``dpmpp_2m_karras``), else None."""
    lowered = name.strip().lower()
    if lowered in _ALIASES:
        return _ALIASES[lowered]
    key = sampler_key(name)
    if key in SAMPLERS:
        return key
    return _ALIASES.get(key)
