"""Deforum's reroll_blank_frames: a frame that comes out all black is generated again on the next
seeds (reroll), stops the run (interrupt), or is kept (ignore); the frames before it stay."""

from __future__ import annotations

import cv2
import pytest
import torch

from engine.backends.preview import PreviewBackend
from engine.errors import DriftwaveError, collecting_notices
from engine.presets import settings_from_data
from engine.render import render


class BlankOnSomeSeeds(PreviewBackend):
    """The preview's pictures, all black on the seeds in ``blank`` (or NaN); records every seed."""

    def __init__(self, blank: set[int], value: float = 0.0) -> None:
        super().__init__()
        self.blank, self.value, self.seeds = blank, value, []

    def generate(self, request):
        self.seeds.append(request.seed)
        image = super().generate(request)
        return torch.full_like(image, self.value) if request.seed in self.blank else image


def settings_for(tmp_path, **sampling):
    data = {
        "animation": {"animation_mode": "2D", "max_frames": 4},
        "image": {"W": 64, "H": 64},
        "sampling": {"seed": 10, **sampling},
        "batch": {"outdir": str(tmp_path / "out"), "seed_behavior": "iter"},
        "prompts": {"0": "a lighthouse"},
        "model": {"backend": "preview"},
        "coherence": {"diffusion_cadence": 1, "color_coherence": "None"},
        "video": {"skip_video_creation": True},
    }
    with collecting_notices():
        return settings_from_data(data)


@pytest.mark.parametrize("value", [0.0, float("nan")])
def test_reroll_takes_the_next_seeds_for_that_frame_only(tmp_path, value):
    backend = BlankOnSomeSeeds({12, 13}, value)  # frame 2's seed and the next one come out blank
    with collecting_notices() as notices:
        result = render(settings_for(tmp_path, reroll_blank_frames="reroll"), backend=backend)
    assert backend.seeds == [10, 11, 12, 13, 14, 13, 14]  # frames 2 and 3 (seed 13) rerolled, each on its own
    assert any("frame 2 came out blank: rerolled on seed 14" in note for note in notices)
    assert all(cv2.imread(str(path)).max() > 0 for path in result.frames[:3])


def test_interrupt_stops_at_the_blank_frame_keeping_the_frames_before(tmp_path):
    with pytest.raises(DriftwaveError, match="frame 1 came out blank: stopped") as error:
        render(settings_for(tmp_path, reroll_blank_frames="interrupt"), backend=BlankOnSomeSeeds({11}))
    assert error.value.field == "sampling.reroll_blank_frames"
    written = sorted((tmp_path / "out").rglob("frames/*.png"))
    assert [path.name for path in written] == ["000000.png"]


def test_reroll_gives_up_after_its_patience(tmp_path):
    backend = BlankOnSomeSeeds(set(range(11, 100)))
    with pytest.raises(DriftwaveError, match="blank on seeds 11 to 14") as error:
        render(settings_for(tmp_path, reroll_blank_frames="reroll", reroll_patience=3), backend=backend)
    assert error.value.field == "sampling.reroll_patience" and backend.seeds == [10, 11, 12, 13, 14]


def test_ignore_keeps_the_blank_frame(tmp_path):
    result = render(settings_for(tmp_path), backend=BlankOnSomeSeeds({11}))
    assert cv2.imread(str(result.frames[1])).max() == 0 and len(result.frames) == 4
