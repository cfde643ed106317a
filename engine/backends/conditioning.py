"""Prompt conditioning for CLIP text encoders: each text encoded once, blended per frame.

A sub-prompt's tokens are encoded in 75-token chunks (A1111's layout: ``BREAK`` starts a new
chunk, longer prompts get more chunks); the hidden states are cached by the text. Per frame
the emphasis multipliers scale each token's embedding, the mean is restored (A1111's
"original" emphasis), and the sub-prompts are averaged by their weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.prompts import FramePrompt, SubPrompt

CHUNK = 75  # tokens between the start and end tokens of one 77-token window


@dataclass
class Encoded:
    hidden: torch.Tensor  # (1, 77 * chunks, C)
    chunk_of_token: torch.Tensor  # (77 * chunks,) index into the sub-prompt's chunks, -1 for special tokens


class TextConditioner:
    """``penultimate``: SDXL's reading, the second-to-last hidden states without the final norm."""

    def __init__(
        self, tokenizer, text_encoder, device: torch.device, dtype: torch.dtype, *, penultimate: bool = False
    ) -> None:
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.device = device
        self.dtype = dtype
        self.penultimate = penultimate
        self._cache: dict[tuple, Encoded] = {}
        self._pooled: dict[str, torch.Tensor] = {}

    def frame_embeddings(self, frame: FramePrompt, clip_skip: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """(positive, negative) prompt embeddings of one frame, padded to the same length. A frame
        with prompt editing is encoded per step range: one of ``frame.by_step(steps)``'s prompts."""
        _unedited(frame)
        positive = self._side(frame, frame.positive, clip_skip)
        negative = self._side(frame, frame.negative, clip_skip)
        length = max(positive.shape[1], negative.shape[1])
        return self._pad(positive, length, clip_skip), self._pad(negative, length, clip_skip)

    def cached_texts(self) -> int:
        return len(self._cache)

    def clear(self) -> None:
        """Forget every encoding (the text encoder's weights changed: another LoRA set)."""
        self._cache.clear()
        self._pooled.clear()

    def _side(self, frame: FramePrompt, entries: list[tuple[SubPrompt, float]], clip_skip: int) -> torch.Tensor:
        total = sum(weight for _, weight in entries)
        if not entries or total <= 0:
            return self._encode_runs((("", 1.0, False),), clip_skip).hidden
        embeddings = []
        for sub, weight in entries:
            runs = tuple((text, mult, mult == -1.0) for text, mult in frame.emphasis(sub))
            encoded = self._encode_runs(runs, clip_skip)
            embeddings.append((self._emphasised(encoded, [mult for _, mult, _ in runs]), weight / total))
        length = max(e.shape[1] for e, _ in embeddings)
        return sum(self._pad(e, length, clip_skip) * w for e, w in embeddings)

    def _emphasised(self, encoded: Encoded, multipliers: list[float]) -> torch.Tensor:
        if all(m in (1.0, -1.0) for m in multipliers):
            return encoded.hidden
        table = torch.tensor([1.0 if m == -1.0 else m for m in multipliers] + [1.0], device=self.device)
        per_token = table[encoded.chunk_of_token].to(encoded.hidden.dtype)  # index -1 -> the final 1.0
        original_mean = encoded.hidden.float().mean()
        scaled = encoded.hidden * per_token.view(1, -1, 1)
        return scaled * (original_mean / scaled.float().mean()).to(scaled.dtype)

    def _pad(self, embedding: torch.Tensor, length: int, clip_skip: int) -> torch.Tensor:
        if embedding.shape[1] == length:
            return embedding
        empty = self._encode_runs((("", 1.0, False),), clip_skip).hidden
        repeats = (length - embedding.shape[1]) // empty.shape[1]
        return torch.cat([embedding, *([empty] * repeats)], dim=1)

    def _encode_runs(self, runs: tuple[tuple[str, float, bool], ...], clip_skip: int) -> Encoded:
        key = (tuple((text, is_break) for text, _, is_break in runs), clip_skip)
        if key not in self._cache:
            ids, owners = self._tokenize(runs)
            hidden = torch.cat([self._encode_window(window, clip_skip) for window in ids], dim=1)
            flat = [owner for window in owners for owner in window]
            self._cache[key] = Encoded(hidden, torch.tensor(flat, device=self.device))
        return self._cache[key]

    def _tokenize(self, runs) -> tuple[list[list[int]], list[list[int]]]:
        """77-token windows of ids, and for each token the run it came from (-1: special)."""
        bos, eos = self.tokenizer.bos_token_id, self.tokenizer.eos_token_id
        windows: list[list[int]] = []
        owners: list[list[int]] = []
        current: list[int] = []
        current_owner: list[int] = []

        def close() -> None:
            padding = CHUNK - len(current)
            windows.append([bos, *current, *([eos] * (padding + 1))])
            owners.append([-1, *current_owner, *([-1] * (padding + 1))])
            current.clear()
            current_owner.clear()

        for index, (text, _, is_break) in enumerate(runs):
            if is_break:
                close()
                continue
            for token in self.tokenizer(text, add_special_tokens=False, truncation=False).input_ids:
                if len(current) == CHUNK:
                    close()
                current.append(token)
                current_owner.append(index)
        if current or not windows:
            close()
        return windows, owners

    @torch.no_grad()
    def pooled(self, text: str) -> torch.Tensor:
        """The projected embedding of ``text``'s first window (SDXL's second encoder)."""
        if text not in self._pooled:
            ids, _ = self._tokenize(((text, 1.0, False),))
            output = self.text_encoder(torch.tensor([ids[0]], device=self.device))
            self._pooled[text] = output.text_embeds.to(self.dtype)
        return self._pooled[text]

    def frame_pooled(self, frame: FramePrompt) -> tuple[torch.Tensor, torch.Tensor]:
        """(positive, negative) pooled embeddings: the sub-prompts' averaged by weight."""
        _unedited(frame)

        def side(entries: list[tuple[SubPrompt, float]]) -> torch.Tensor:
            total = sum(weight for _, weight in entries)
            if not entries or total <= 0:
                return self.pooled("")
            return sum(self.pooled(sub.plain) * (weight / total) for sub, weight in entries)

        return side(frame.positive), side(frame.negative)

    @torch.no_grad()
    def _encode_window(self, ids: list[int], clip_skip: int) -> torch.Tensor:
        tokens = torch.tensor([ids], device=self.device)
        if self.penultimate:
            return self.text_encoder(tokens, output_hidden_states=True).hidden_states[-1 - clip_skip].to(self.dtype)
        if clip_skip <= 1:
            hidden = self.text_encoder(tokens)[0]
        else:
            output = self.text_encoder(tokens, output_hidden_states=True)
            layer = output.hidden_states[-clip_skip]
            model = getattr(self.text_encoder, "text_model", self.text_encoder)  # transformers 4 nests it
            hidden = model.final_layer_norm(layer)
        return hidden.to(self.dtype)


def _unedited(frame: FramePrompt) -> None:
    if frame.edited:
        raise ValueError("a prompt with prompt editing is encoded per step: use one of frame.by_step(steps)")


class SDXLConditioner:
    """SDXL's two text encoders: their penultimate hidden states side by side, and the second
    encoder's pooled embedding (with the size conditioning, the UNet's added inputs)."""

    def __init__(self, pipeline, device: torch.device, dtype: torch.dtype) -> None:
        self.first = TextConditioner(pipeline.tokenizer, pipeline.text_encoder, device, dtype, penultimate=True)
        self.second = TextConditioner(pipeline.tokenizer_2, pipeline.text_encoder_2, device, dtype, penultimate=True)

    def frame_embeddings(self, frame: FramePrompt, clip_skip: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        sides = []
        for first, second in zip(
            self.first.frame_embeddings(frame, clip_skip), self.second.frame_embeddings(frame, clip_skip), strict=True
        ):
            length = max(first.shape[1], second.shape[1])
            sides.append(
                torch.cat([self.first._pad(first, length, clip_skip), self.second._pad(second, length, clip_skip)], -1)
            )
        length = max(side.shape[1] for side in sides)
        return tuple(self._pad(side, length, clip_skip) for side in sides)

    def frame_pooled(self, frame: FramePrompt) -> tuple[torch.Tensor, torch.Tensor]:
        return self.second.frame_pooled(frame)

    def cached_texts(self) -> int:
        return self.first.cached_texts()

    def clear(self) -> None:
        self.first.clear()
        self.second.clear()

    def _pad(self, embedding: torch.Tensor, length: int, clip_skip: int) -> torch.Tensor:
        if embedding.shape[1] == length:
            return embedding
        empty = torch.cat(
            [self.first._encode_runs((("", 1.0, False),), clip_skip).hidden,
             self.second._encode_runs((("", 1.0, False),), clip_skip).hidden], -1
        )  # fmt: skip
        return torch.cat([embedding, *([empty] * ((length - embedding.shape[1]) // empty.shape[1]))], dim=1)
