"""Optical-flow cadence, the optical-flow redo and the diffusion redo (Deforum's coherence tab):
the in-between frames follow the picture's motion along the measured flow, the redos generate
before the frame as Deforum's loop does, and a resumed run is pixel-identical."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from runs import same_frames, whole_and_resumed
from test_hybrid import texture

from engine.backends import load_backend
from engine.backends.preview import PreviewBackend
from engine.deforum import import_deforum_data
from engine.errors import collecting_notices
from engine.flow import morph
from engine.images import from_array, to_array, write_image
from engine.presets import settings_from_data
from engine.render import render
from engine.settings import ModelSettings

SIZE, STEP, CADENCE = 128, 8, 4  # each generation moves the picture STEP pixels right


class PanningBackend(PreviewBackend):
    """A generation that moves its init ``STEP`` pixels to the right: a picture whose content
    moves by a known amount from one diffused frame to the next. Records each request's seed."""

    def __init__(self) -> None:
        super().__init__()
        self.seeds: list[int] = []

    def generate(self, request):
        self.seeds.append(request.seed)
        return torch.roll(request.init, STEP, dims=-1)


def shift_between(before: np.ndarray, after: np.ndarray) -> float:
    """How far ``after``'s content lies right of ``before``'s (phase correlation of the middles)."""
    middle = slice(SIZE // 4, 3 * SIZE // 4)
    gray = [cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[middle, middle].astype(np.float64) for image in (before, after)]
    (dx, dy), _ = cv2.phaseCorrelate(*gray)
    assert abs(dy) < 1.0
    return dx


def settings_for(
    tmp_path: Path, outdir: str = "out", *, size=SIZE, backend="preview", frames=13, strength=0.5, **coherence
):
    init = tmp_path / "texture.png"
    if not init.exists():
        write_image(from_array(texture(size=SIZE)), init)
    data = {
        "animation": {"animation_mode": "2D", "max_frames": frames},
        "image": {"W": size, "H": size},
        "sampling": {"seed": 5},
        "batch": {"outdir": str(tmp_path / outdir)},
        "prompts": {"0": "a tapestry"},
        "model": {"backend": backend},
        "init": {"use_init": True, "init_image": str(init), "strength": 0.5},
        "motion": {
            **{"zoom": "0:(1)", "angle": "0:(0)", "translation_x": "0:(0)", "translation_y": "0:(0)"},
            **{"noise_schedule": "0:(0)", "contrast_schedule": "0:(1)", "strength_schedule": f"0:({strength})"},
        },
        "anti_blur": {"amount_schedule": "0:(0)"},
        "coherence": {"diffusion_cadence": CADENCE, "color_coherence": "None", **coherence},
    }
    with collecting_notices():
        return settings_from_data(data)


def frames_of(result) -> list[np.ndarray]:
    return [cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB) for path in result.frames]


def test_morph_follows_a_pan_along_its_flow():
    first = from_array(texture(size=SIZE))
    second = torch.roll(first, 12, dims=-1)
    flow = torch.zeros(SIZE, SIZE, 2)
    flow[..., 0] = 12
    for share in (0.25, 0.5, 0.75):
        between = morph(first, second, share, flow)
        assert shift_between(texture(size=SIZE), to_array(between)) == pytest.approx(12 * share, abs=0.5)


@pytest.mark.parametrize("method", ["DIS Medium", "DIS Fine", "Farneback"])
def test_flow_cadence_in_betweens_follow_the_pan_within_a_pixel(tmp_path, method):
    frames = frames_of(render(settings_for(tmp_path, optical_flow_cadence=method), backend=PanningBackend()))
    for group in (1, 2):  # each group: the previous picture to the new one, STEP pixels right
        start = frames[group * CADENCE - 1]  # the previous group's last frame: its newest picture
        for k in range(CADENCE):
            expected = STEP * (k + 1) / CADENCE
            assert shift_between(start, frames[group * CADENCE + k]) == pytest.approx(expected, abs=1.0), (group, k)


def test_without_flow_the_in_betweens_cross_fade_and_do_not_follow(tmp_path):
    frames = frames_of(render(settings_for(tmp_path), backend=PanningBackend()))
    start = frames[CADENCE - 1]
    halfway = shift_between(start, frames[CADENCE + 1])  # 2 pixels of a 2-then-8 cross-fade: a ghost at 0 or 8
    assert abs(halfway - STEP / 2) > 1.0


def test_a_cadence_flow_factor_of_0_is_the_plain_cross_fade(tmp_path):
    still = settings_for(tmp_path, "still", optical_flow_cadence="DIS Medium", cadence_flow_factor_schedule="0:(0)")
    plain = settings_for(tmp_path, "plain")
    assert same_frames(render(still, backend=PanningBackend()), render(plain, backend=PanningBackend()))


@pytest.mark.parametrize(("factor", "moved"), [(1.0, 3 * STEP), (0.0, 2 * STEP)])
def test_the_optical_flow_redo_moves_its_trial_along_the_flow(tmp_path, factor, moved):
    settings = settings_for(
        tmp_path,
        diffusion_cadence=1,
        optical_flow_redo_generation="DIS Medium",
        redo_flow_factor_schedule=f"0:({factor})",
    )
    backend = PanningBackend()
    frames = frames_of(render(settings, backend=backend))
    # frame 1: a trial (STEP), moved along its flow (STEP * factor), then the generation (STEP)
    assert shift_between(frames[0], frames[1]) == pytest.approx(moved, abs=1.0)
    assert len(backend.seeds) == 1 + 2 * 12  # frame 0 once, every later frame twice: a trial, then the frame
    plain = PanningBackend()
    render(settings_for(tmp_path, "plain", diffusion_cadence=1), backend=plain)
    assert backend.seeds[0::2] == plain.seeds and not set(backend.seeds[1::2]) & set(plain.seeds)


def test_diffusion_redo_chains_its_generations_before_the_frame(tmp_path):
    backend = PanningBackend()
    frames = frames_of(render(settings_for(tmp_path, diffusion_cadence=1, diffusion_redo=2), backend=backend))
    assert shift_between(frames[0], frames[1]) == pytest.approx(3 * STEP, abs=1.0)  # two redos, then the frame
    assert len(backend.seeds) == 1 + 3 * 12
    redo_seeds = backend.seeds[1:3]
    assert len(set(redo_seeds)) == 2 and backend.seeds[3] not in redo_seeds  # throwaways on seeds of their own
    again = PanningBackend()
    render(settings_for(tmp_path, "again", diffusion_cadence=1, diffusion_redo=2), backend=again)
    assert again.seeds == backend.seeds  # drawn from the frame's seed: the same every run


def test_a_zero_strength_frame_is_neither_redone_nor_flow_morphed(tmp_path):
    backend = PanningBackend()
    render(settings_for(tmp_path, diffusion_cadence=1, diffusion_redo=3, strength=0), backend=backend)
    assert len(backend.seeds) == 13  # Deforum redoes only where the init is kept (strength > 0)


@pytest.mark.parametrize("backend_name", ["preview", "tiny"])
def test_flow_cadence_and_redo_resume_pixel_identical(tmp_path, backend_name):
    backend = load_backend(ModelSettings(backend=backend_name))
    size = 64 if backend_name == "tiny" else SIZE

    def settings(outdir):
        flows = {"optical_flow_cadence": "DIS Fine", "optical_flow_redo_generation": "Farneback"}
        return settings_for(tmp_path, outdir, size=size, backend=backend_name, frames=10, **flows)

    whole, resumed = whole_and_resumed(settings, backend, stop_after=5)
    assert same_frames(whole, resumed)


def test_a1111_files_import_the_flow_settings_raft_included():
    data = {
        "animation_mode": "2D",
        "W": 512,
        "deforum_git_commit_id": "3224268",
        "diffusion_cadence": "3",
        "optical_flow_cadence": "RAFT",
        "cadence_flow_factor_schedule": "0: (1), 10: (0.5)",
        "optical_flow_redo_generation": "DIS Fine",
        "redo_flow_factor_schedule": "0: (1)",
        "diffusion_redo": "2",
    }
    imported = import_deforum_data(data)
    coherence = imported.settings.coherence
    assert coherence.optical_flow_cadence == "RAFT"
    assert (coherence.optical_flow_redo_generation, coherence.diffusion_redo) == ("DIS Fine", 2)
    assert coherence.cadence_flow_factor_schedule.replace(" ", "") == "0:(1),10:(0.5)"
    assert not any("optical_flow" in w or "diffusion_redo" in w for w in imported.warnings)
