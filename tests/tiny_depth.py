"""Tiny random-weight depth checkpoints, saved the way the hub's are (weights + preprocessor)."""

from __future__ import annotations

import json
from pathlib import Path


def save_checkpoint(model, folder: Path, size: int, keep_aspect: bool, multiple: int) -> str:
    """Save ``model`` with a preprocessor config shaped like the hub checkpoints' ones."""
    model.save_pretrained(folder)
    processor = {
        "image_processor_type": "DPTImageProcessor",
        "size": {"height": size, "width": size},
        "keep_aspect_ratio": keep_aspect,
        "ensure_multiple_of": multiple,
        "resample": 3,
        "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225],
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    return str(folder)


def tiny_depth_anything(folder: Path) -> str:
    """A Depth-Anything model (DINOv2 backbone, hidden size 32) in ``folder``; returns its path.
    The same checkpoint as the GPU bench's dry run."""
    from bench.architectures import tiny_depth_folder

    return str(tiny_depth_folder(folder))
