"""Image generators behind one interface: ``diffusers`` (Stable Diffusion), ``tiny`` (the same
pipeline with small random weights, for tests) and ``preview`` (no diffusion)."""

from __future__ import annotations

from engine.backends.base import Backend, GenerationRequest, ModelLoadError

__all__ = ["Backend", "GenerationRequest", "ModelLoadError", "load_backend"]


def load_backend(model_settings, *, device: str | None = None) -> Backend:
    """The backend ``model_settings.backend`` names, loaded; raises ModelLoadError."""
    kind = model_settings.backend
    if kind == "preview":
        from engine.backends.preview import PreviewBackend

        return PreviewBackend(device=device or "cpu")
    from engine.backends.diffusion import DiffusionBackend

    if kind == "tiny":
        from engine.backends.tiny import tiny_model_dir

        return DiffusionBackend.load(str(tiny_model_dir()), model_settings, device=device or "cpu", label="tiny")
    return DiffusionBackend.load(model_settings.model, model_settings, device=device)
