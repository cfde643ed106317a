"""The anchors' own code, for the benchmarks' baselines.

``deforum/`` holds files of deforum-art/sd-webui-deforum at ``DEFORUM_COMMIT``, byte for byte
(AGPL-3.0, their copyright headers kept; ``DEFORUM_BLOBS`` are their git blob hashes). The
files import A1111's modules, so :func:`deforum` runs just the named top-level functions,
classes and assignments of a file, with the libraries they call supplied by name.
"""

from __future__ import annotations

import ast
import math
import re
import warnings
from pathlib import Path
from types import SimpleNamespace

DEFORUM_COMMIT = "322426851408ebca2cd49492bfeb1ec86e1dc869"
DEFORUM_BLOBS = {
    "animation.py": "8123770cfc570ce5de6af3f640012088fab96e7b",
    "animation_key_frames.py": "ca4aa43106b3e635798b5ee84d014b7876756430",
    "colors.py": "b95d9384a1888d69d09b774387097999724d65fc",
    "hybrid_video.py": "03e742a0c8d914043e0c777fd8af303dc4435f90",
    "image_sharpening.py": "cb911de9418b9be49d263c4ec1afb71858c4e014",
    "noise.py": "3085d3fe0b9f58e096bf6655e2388a82c25b7fda",
    "parseq_adapter.py": "d217a71b265ca39d769a59bd8e3ddb20b9bb8902",
    "RAFT.py": "444d273eaa3e749301ce9ffd64bd8b42f3cf88ba",
    "IFNet_HDv3.py": "2360c9e7d15ad4c73e8bb34112999e3d46aeb8c2",
    "RIFE_HDv3.py": "585d964fc5848fb47379e9fd9aa56a8d80cc1af0",
    "warplayer.py": "21b0b904cf71b297fd43813134c57d13a3ae9e4a",
    "inference_video.py": "6300c7d6a4c6b4696b40c7a9aad092aa6abb9a16",
    "prompt.py": "c317ebaae007d613ce70460a73e1bf16c9d841cc",
}
DEFORUM_DIR = Path(__file__).parent / "deforum"


def _libraries() -> dict:
    """What the Deforum files import, under the names they import it as."""
    import logging
    import operator

    import cv2
    import numexpr
    import numpy as np
    import pandas as pd
    import torch
    from einops import rearrange
    from PIL import ImageOps
    from skimage.exposure import match_histograms
    from torch.nn.functional import interpolate

    return {
        "cv2": cv2,
        "np": np,
        "torch": torch,
        "math": math,
        "re": re,
        "numexpr": numexpr,
        "pd": pd,
        "rearrange": rearrange,
        "ImageOps": ImageOps,
        "match_histograms": match_histograms,
        "interpolate": interpolate,
        "logging": logging,
        "operator": operator,
    }


def _defined(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, ast.Assign):
        return {target.id for target in node.targets if isinstance(target, ast.Name)}
    return set()


def deforum(file: str, *names: str, **extra) -> SimpleNamespace:
    """The named top-level definitions of ``deforum/<file>``, run in one namespace holding the
    libraries and ``extra`` (definitions taken from other files)."""
    with warnings.catch_warnings():  # their regexes are written with invalid escapes ("\\S")
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        tree = ast.parse((DEFORUM_DIR / file).read_text(), filename=str(DEFORUM_DIR / file))
    chosen = [node for node in tree.body if _defined(node) & set(names)]
    missing = set(names) - set().union(*(_defined(node) for node in chosen))
    if missing:
        raise LookupError(f"{file} has no {', '.join(sorted(missing))}")
    namespace = {**_libraries(), **extra}
    exec(compile(ast.Module(chosen, type_ignores=[]), str(DEFORUM_DIR / file), "exec"), namespace)
    return SimpleNamespace(**{name: namespace[name] for name in names})


def deforum_frame_functions() -> SimpleNamespace:
    """Deforum's per-frame 2D functions: warp, colour match, unsharp mask and grain."""
    animation = deforum("animation.py", "sample_to_cv2", "anim_frame_warp_2d")
    noise = deforum(
        "noise.py",
        "deforum_noise_gen",
        "rand_perlin_2d",
        "rand_perlin_2d_octaves",
        "condition_noise_mask",
        "add_noise",
        sample_to_cv2=animation.sample_to_cv2,
    )
    return SimpleNamespace(
        anim_frame_warp_2d=animation.anim_frame_warp_2d,
        maintain_colors=deforum("colors.py", "maintain_colors").maintain_colors,
        unsharp_mask=deforum("image_sharpening.py", "unsharp_mask").unsharp_mask,
        add_noise=noise.add_noise,
        rand_perlin_2d_octaves=noise.rand_perlin_2d_octaves,
    )


def deforum_frame_interpolater():
    """Deforum's schedule parser class (``FrameInterpolater``)."""
    prompt = deforum("prompt.py", "check_is_number")
    return deforum(
        "animation_key_frames.py", "FrameInterpolater", check_is_number=prompt.check_is_number
    ).FrameInterpolater


def deforum_parseq_controlnet_series(controlnet_args: dict, document: dict, max_frames: int):
    """Deforum's ControlNet schedules under a Parseq document: ``ParseqControlNetKeysDecorator``
    over ``ControlNetKeys`` (A1111's unit count option unset: five units); returns
    ``series(name)`` for a name such as ``cn_1_weight``, a value per frame."""
    interpolater = deforum_frame_interpolater()
    a1111 = SimpleNamespace(opts=SimpleNamespace(data={}))
    keys = deforum(
        "animation_key_frames.py", "ControlNetKeys", FrameInterpolater=interpolater, shared=a1111
    ).ControlNetKeys
    decorators = deforum(
        "parseq_adapter.py", "IGNORED_FIELDS", "ParseqAbstractDecorator", "ParseqControlNetKeysDecorator"
    )
    defaults = {"weight": "0:(1)", "guidance_start": "0:(0.0)", "guidance_end": "0:(1.0)"}
    values = {f"cn_{n}_{name}": default for n in range(1, 6) for name, default in defaults.items()}
    anim_args = SimpleNamespace(max_frames=max_frames)
    adapter = SimpleNamespace(rendered_frames=document["rendered_frames"], anim_args=anim_args)
    with warnings.catch_warnings():  # pandas' FutureWarning on Deforum's string writes
        warnings.simplefilter("ignore", FutureWarning)
        decorated = decorators.ParseqControlNetKeysDecorator(
            adapter, keys(anim_args, SimpleNamespace(**(values | controlnet_args)))
        )

    def series(name: str):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return getattr(decorated, f"{name}_schedule_series").to_numpy(dtype=float)

    return series


def deforum_raft():
    """Deforum's ``RAFT`` class (``RAFT.py``: torchvision's raft_large with its default weights,
    ``predict(image1, image2)`` the flow, (H, W, 2)); needs torchvision."""
    import torchvision.transforms.functional as functional
    from torchvision.models.optical_flow import Raft_Large_Weights, raft_large

    return deforum("RAFT.py", "RAFT", F=functional, Raft_Large_Weights=Raft_Large_Weights, raft_large=raft_large).RAFT


def deforum_rife() -> SimpleNamespace:
    """Deforum's RIFE v4.6 (src/rife: ``IFNet_HDv3.IFNet``, ``warplayer.warp``) and how it runs it:
    ``model(flownet)`` a ``RIFE_HDv3.Model`` holding that network (its ``inference``), and
    ``inference_video.make_inference``."""
    import torch

    torch_names = {"nn": torch.nn, "F": torch.nn.functional}
    warp = deforum("warplayer.py", "device", "backwarp_tenGrid", "warp").warp
    network = deforum("IFNet_HDv3.py", "device", "conv", "ResConv", "IFBlock", "IFNet", warp=warp, **torch_names)
    rife = deforum("RIFE_HDv3.py", "Model", **torch_names)
    video = deforum("inference_video.py", "make_inference")

    def model(flownet):
        held = rife.Model.__new__(rife.Model)  # its __init__ builds the optimiser and losses for training
        held.flownet, held.version = flownet, 3.9
        return held

    return SimpleNamespace(IFNet=network.IFNet, model=model, make_inference=video.make_inference)


def deforum_flow_functions() -> SimpleNamespace:
    """Deforum's optical flow: measured (``get_flow_from_images``, its DIS and Farneback presets)
    and applied (``image_transform_optical_flow``: a remap with a reflected border)."""
    return deforum(
        "hybrid_video.py",
        "get_flow_from_images",
        "get_flow_from_images_DIS",
        "get_flow_from_images_Farneback",
        "image_transform_optical_flow",
        "remap",
        "extend_flow",
        "center_crop_image",
    )
