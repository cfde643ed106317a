"""Loading a transformers model by hub id or folder, with errors that name the setting."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from engine.errors import DriftwaveError

_OFFLINE = ("1", "ON", "YES", "TRUE")


def check_available(name: str, *, what: str, field: str, hint: str) -> None:
    """Before a run starts: ``name`` is a folder, in the local cache, or on a reachable hub."""
    path = Path(name).expanduser()
    if path.is_dir():
        return
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise DriftwaveError(f"{what} {name} does not exist", field=field, hint=hint)
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    from engine.backends.diffusion import hub_reachable

    if os.environ.get("HF_HUB_OFFLINE", "").upper() in _OFFLINE or not hub_reachable():
        raise DriftwaveError(
            f"{what} {name} is not downloaded and huggingface.co cannot be reached from here", field=field, hint=hint
        )


def load_pretrained(loader: Any, name: str, *, what: str, field: str, hint: str, **options: Any) -> Any:
    """``loader.from_pretrained(name)`` from a folder or the local cache first; the hub only when
    not offline (HF_HUB_OFFLINE) and reachable. ``what`` names the model in messages."""
    path = Path(name).expanduser()
    if not path.is_dir() and (name.startswith((".", "/", "~")) or name.count("/") > 1):
        raise DriftwaveError(f"{what} {name} does not exist", field=field, hint=hint)
    source = str(path) if path.is_dir() else name
    try:
        try:
            return loader.from_pretrained(source, local_files_only=True, **options)
        except OSError:
            if path.is_dir():
                raise
        from engine.backends.diffusion import hub_reachable

        if os.environ.get("HF_HUB_OFFLINE", "").upper() in _OFFLINE or not hub_reachable():
            raise DriftwaveError(
                f"{what} {name} is not downloaded and huggingface.co cannot be reached from here",
                field=field,
                hint=hint,
            ) from None
        return loader.from_pretrained(source, **options)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, ImportError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DriftwaveError(f"cannot load {what} {name}: {reason}", field=field, hint=hint) from None
