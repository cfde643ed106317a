"""Deforum's composable masks: ``mask_schedule`` and ``noise_mask_schedule`` expressions.

The grammar is in ``engine.mask_syntax``; here the leaves become pictures and combine.

Masks are (1, 1, H, W) in [0, 1]. On black-and-white masks the operators give Deforum's
``ImageChops`` results; on grays they are the fuzzy ones (min, max, |a - b|), where Deforum
dithers to black and white first. A result that is black everywhere means no mask, as
Deforum's ``check_mask_for_errors`` says.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from engine.errors import notify
from engine.images import from_array, load_image
from engine.mask_syntax import Leaf, Node, Not, leaves, parse_mask


def compose(node: Node, lookup: Callable[[Leaf], torch.Tensor]) -> torch.Tensor:
    """The mask ``node`` makes of the leaves' masks."""
    if isinstance(node, Leaf):
        return lookup(node)
    if isinstance(node, Not):
        return 1 - compose(node.operand, lookup)
    left, right = compose(node.left, lookup), compose(node.right, lookup)
    if node.operator == "&":
        return torch.minimum(left, right)
    if node.operator == "|":
        return torch.maximum(left, right)
    if node.operator == "^":
        return (left - right).abs()
    return torch.minimum(left, 1 - right)


def blank_as_none(mask: torch.Tensor | None) -> torch.Tensor | None:
    """No mask for one that is black everywhere (Deforum's check_mask_for_errors)."""
    return None if mask is None or float(mask.max()) <= 0 else mask


def say_missing(leaf: Leaf, field: str, why: str, said: set[tuple[str, str]]) -> None:
    """Once per field and mask: which mask is black here and why."""
    if (field, leaf.value) not in said:
        said.add((field, leaf.value))
        notify(f"{field}: {{{leaf.value}}} is black: {why}")


class FrameMasks:
    """One run's masks per frame, from the mask schedules: ``keep`` (the inpainting mask, 1 keeps
    the init) and ``grain`` (where the grain goes), each None for none.

    ``init_mask``: the mask file or init alpha, adjusted, before invert_mask (``{init_mask}``);
    ``video_mask``: the mask video's frame by index (``{video_mask}``, Video Input). Files and
    the CLIPSeg model the schedules name are loaded here, before frame 0.
    """

    def __init__(
        self,
        settings,
        schedules: dict,
        device,
        init_mask: torch.Tensor | None = None,
        *,
        video_mask: Callable[[int], torch.Tensor | None] | None = None,
    ) -> None:
        from engine.segmentation import WordMasks

        self.settings, self.device = settings, torch.device(device)
        self.init_mask, self.video_mask = init_mask, video_mask
        self.fields = _fields_in_use(settings)
        self._trees: dict[str, Node] = {}
        self._files: dict[str, torch.Tensor] = {}
        self._said: set[tuple[str, str]] = set()
        used: dict[Leaf, str] = {}  # leaf -> the first field naming it
        for field in self.fields:
            for _, text in schedules[field].keys:
                used |= {leaf: field for leaf in leaves(self._tree(text, field)) if leaf not in used}
        for leaf, field in used.items():
            if leaf.kind == "file":
                self._files[leaf.value] = mask_from_file(settings, leaf.value, self.device, field=field)
        needs_words = any(leaf.kind == "word" or leaf.value == "human_mask" for leaf in used)
        self.words = WordMasks(settings.init.word_mask_model, self.device) if needs_words else None

    def first(self) -> torch.Tensor | None:
        """Frame 0's inpainting mask: the init mask (Deforum's first frame takes no schedule)."""
        if not self.settings.init.use_mask:
            return None
        return self._inverted(blank_as_none(self.init_mask))

    def keep(self, frame: int, expression: str, image: torch.Tensor) -> torch.Tensor | None:
        """The frame's inpainting mask from the mask schedule's ``expression``; ``image`` is the
        picture word masks look at (the frame's init)."""
        if not self.settings.init.use_mask:
            return None
        return self._inverted(self._composed("init.mask_schedule", expression, frame, image))

    def grain(self, frame: int, mask: str, noise_mask: str, image: torch.Tensor) -> torch.Tensor | None:
        """Where the frame's grain goes: the noise mask schedule's ``noise_mask`` with
        use_noise_mask, else where the frame is diffused (the inpainting mask's dark part)."""
        if self.settings.coherence.use_noise_mask:
            return self._inverted(self._composed("coherence.noise_mask_schedule", noise_mask, frame, image))
        keep = self.keep(frame, mask, image)
        return None if keep is None else 1 - keep

    def _inverted(self, mask: torch.Tensor | None) -> torch.Tensor | None:
        return 1 - mask if mask is not None and self.settings.init.invert_mask else mask

    def _composed(self, field: str, expression: str, frame: int, image: torch.Tensor) -> torch.Tensor | None:
        def lookup(leaf: Leaf) -> torch.Tensor:
            mask = self._leaf(leaf, field, frame, image)
            return mask if mask is not None else torch.zeros_like(image[:, :1])

        return blank_as_none(compose(self._tree(expression, field), lookup))

    def _leaf(self, leaf: Leaf, field: str, frame: int, image: torch.Tensor) -> torch.Tensor | None:
        if leaf.kind == "file":
            return self._files[leaf.value]
        if leaf.kind == "word" or leaf.value == "human_mask":
            return self.words.mask(image, leaf.value if leaf.kind == "word" else "person")
        if leaf.value == "everywhere":
            return torch.ones_like(image[:, :1])
        if leaf.value == "init_mask":
            if self.init_mask is None:
                why = "no mask file (init.mask_file) or init alpha (init.use_alpha_as_mask)"
                say_missing(leaf, field, why, self._said)
            return self.init_mask
        mask = self.video_mask(frame) if self.video_mask is not None else None
        if mask is None:
            say_missing(leaf, field, "no mask video (video_input.use_mask_video, in Video Input mode)", self._said)
        return mask

    def _tree(self, text: str, field: str) -> Node:
        if text not in self._trees:
            self._trees[text] = parse_mask(text, field=field)
        return self._trees[text]


def mask_from_file(settings, path: str, device, *, field: str) -> torch.Tensor:
    """A mask image as the init mask is read: gray at the render size, brightness and contrast
    adjusted (mask_brightness_adjust, mask_contrast_adjust)."""
    picture = load_image(path, (settings.image.W, settings.image.H), field=field)[..., :3]
    return adjusted(from_array(picture.mean(axis=2, keepdims=True).astype("uint8"), device), settings.init)


def adjusted(mask: torch.Tensor, options) -> torch.Tensor:
    """``mask`` with the init settings' brightness and contrast adjustments."""
    return ((mask * options.mask_brightness_adjust - 0.5) * options.mask_contrast_adjust + 0.5).clamp(0, 1)


def check_masks(settings, schedules: dict) -> None:
    """Before the run: the files the mask schedules in use name can be read, their CLIPSeg model found."""
    from engine.hub import check_available
    from engine.segmentation import FIELD, HINT

    for field in _fields_in_use(settings):
        for _, text in schedules[field].keys:
            for leaf in leaves(parse_mask(text, field=field)):
                if leaf.kind == "file":
                    load_image(leaf.value, field=field)
                elif leaf.kind == "word" or leaf.value == "human_mask":
                    check_available(settings.init.word_mask_model, what="CLIPSeg model", field=FIELD, hint=HINT)


def _fields_in_use(settings) -> list[str]:
    """The mask schedules the settings read: the inpainting mask's with use_mask, the grain's
    with use_noise_mask."""
    fields = ["init.mask_schedule"] if settings.init.use_mask else []
    return fields + (["coherence.noise_mask_schedule"] if settings.coherence.use_noise_mask else [])
