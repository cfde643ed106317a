"""Masks of what words name, found by CLIPSeg (transformers' ``CLIPSegForImageSegmentation``).

Deforum's word masks (``<a cat>`` in a mask schedule) run CLIPSeg; ``{human_mask}`` is the mask
of "person" here, where Deforum runs RobustVideoMatting over the hybrid video.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.hub import load_pretrained

FIELD = "init.word_mask_model"
HINT = "give CLIPSeg's hub id (CIDAS/clipseg-rd64-refined) or a folder saved with save_pretrained"


class WordMasks:
    """A CLIPSeg model on a device: ``mask(image, words)`` is where the words are, in [0, 1]."""

    def __init__(self, name: str, device: torch.device | str) -> None:
        from transformers import AutoProcessor, CLIPSegForImageSegmentation

        found = {"what": "CLIPSeg model", "field": FIELD, "hint": HINT}
        self.processor = load_pretrained(AutoProcessor, name, **found)
        self.device = torch.device(device)
        self.model = load_pretrained(CLIPSegForImageSegmentation, name, **found).to(self.device).eval()
        self._texts: dict[str, dict[str, torch.Tensor]] = {}

    @torch.inference_mode()
    def mask(self, image: torch.Tensor, words: str) -> torch.Tensor:
        """(1, 3, H, W) in [0, 1] -> (1, 1, H, W): the sigmoid of CLIPSeg's logits at the image's size."""
        height, width = image.shape[-2:]
        pixels = (image[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        inputs = dict(self.processor(images=[pixels], return_tensors="pt"))
        inputs |= self._text(words)
        logits = self.model(**{name: value.to(self.device) for name, value in inputs.items()}).logits
        logits = logits.reshape(1, 1, *logits.shape[-2:]).float()
        return torch.sigmoid(F.interpolate(logits, (height, width), mode="bilinear")).to(image.device)

    def _text(self, words: str) -> dict[str, torch.Tensor]:
        """The tokenized words (once per text)."""
        if words not in self._texts:
            tokens = self.processor(text=[words], padding="max_length", return_tensors="pt")
            self._texts[words] = {name: tokens[name] for name in ("input_ids", "attention_mask") if name in tokens}
        return self._texts[words]
