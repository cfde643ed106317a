"""LoRAs asked for by ``<lora:NAME:W>`` tags in the prompts, switched between frames.

A name is a LoRA file's stem (A1111's rule), found in ``model.lora_dir`` and its subfolders or,
when that is empty, beside the model and in A1111's ``models/Lora``. Each file is loaded once
as a peft adapter (diffusers' ``load_lora_weights``, which reads the kohya/A1111 and the
diffusers layouts) and the frame's set is made active with ``set_adapters`` at its weights.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from engine.errors import notify

SUFFIXES = (".safetensors", ".pt", ".ckpt", ".bin")


def lora_folders(model: str, lora_dir: str) -> list[Path]:
    """Where LoRA files are looked for, in order."""
    if lora_dir:
        return [Path(lora_dir).expanduser()]
    model_path = Path(model).expanduser()
    if not model_path.exists():
        return []  # a hub id: no folder of its own
    beside = model_path.parent if model_path.is_file() else model_path
    return [beside, beside.parent / "Lora", beside / "Lora"]


def find_lora(name: str, folders: list[Path]) -> Path | None:
    """The file whose stem is ``name`` (then the same ignoring case), searched recursively."""
    for exact in (True, False):
        for folder in folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*")):
                if path.suffix.lower() in SUFFIXES and (
                    path.stem == name if exact else path.stem.casefold() == name.casefold()
                ):
                    return path
    return None


class PromptLoras:
    """The adapters a pipeline holds, and which of them the current frame uses."""

    def __init__(self, pipeline, folders: list[Path], on_change) -> None:
        self.pipeline = pipeline
        self.folders = folders
        self.on_change = on_change  # called when the active set changes (text encodings go stale)
        self.adapters: dict[str, str] = {}  # tag name -> adapter name
        self.missing: set[str] = set()
        self.active: tuple[tuple[str, float], ...] = ()

    def apply(self, wanted: list[tuple[str, float]]) -> None:
        """Make exactly ``wanted`` (name, weight) active; unknown names are named once and skipped."""
        usable = tuple((name, weight) for name, weight in wanted if self._adapter(name))
        if usable == self.active:
            return
        if usable:
            self.pipeline.enable_lora()
            self.pipeline.set_adapters([self.adapters[name] for name, _ in usable], [w for _, w in usable])
        else:
            self.pipeline.disable_lora()
        self.active = usable
        self.on_change()

    def _adapter(self, name: str) -> str | None:
        if name in self.adapters:
            return self.adapters[name]
        if name in self.missing:
            return None
        path = find_lora(name, self.folders)
        if path is None:
            self.missing.add(name)
            where = ", ".join(str(folder) for folder in self.folders) or "nowhere (set model.lora_dir)"
            notify(f"LoRA {name!r} was not found in {where}; rendering without it")
            return None
        adapter = re.sub(r"\W", "_", name) + f"_{len(self.adapters)}"
        try:
            with warnings.catch_warnings():  # peft warns about every adapter after the first
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                self.pipeline.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=adapter)
        except (OSError, ValueError, KeyError, RuntimeError, TypeError, ImportError) as error:
            self.missing.add(name)
            notify(f"LoRA {name!r} ({path}) cannot be loaded: {str(error).splitlines()[0]}; rendering without it")
            return None
        self.adapters[name] = adapter
        return adapter
