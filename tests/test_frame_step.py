"""One frame step for render and live: the live loop's frames are the offline render's, given
the same settings and the same envelope values per frame; live edits that rebuild what depends
on them (the hybrid video) change the next frame."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from test_hybrid import (
    pan_video,  # noqa: F401 (a fixture)
    settings_for,
)
from test_live import file_source, stepped_tones

from engine.backends import load_backend
from engine.errors import collecting_notices
from engine.images import to_array
from engine.live import LiveSession
from engine.modes import Modes
from engine.outputs import RunFolder
from engine.plan import compile_plan
from engine.presets import settings_from_data
from engine.protocol import FrameWritten
from engine.render import render
from engine.settings import ModelSettings

FRAMES = 6
FILTERS = [{"name": "fLo", "f_center": 105, "f_width": 65}, {"name": "fHi", "f_center": 900, "f_width": 600}]


@pytest.fixture(scope="module")
def tiny():
    return load_backend(ModelSettings(backend="tiny"))


def reactive_settings(tmp_path: Path):
    """Audio in the motion, strength, cfg, grain and a prompt weight; every per-frame setting
    the frame step reads away from its default."""
    data = {
        "animation": {"animation_mode": "2D", "max_frames": FRAMES},
        "image": {"W": 64, "H": 64},
        "model": {"backend": "tiny"},
        "batch": {"outdir": str(tmp_path / "out"), "seed_behavior": "iter"},
        "sampling": {"seed": 5, "steps": 4, "sampler": "euler", "scale": "0:(5 + 2*fHi)"},
        "prompts": {"0": "a lantern festival :1.0 AND a frozen lake :(0.2 + fLo)"},
        "live": {"target_fps": 20},
        "audio": {"filters": FILTERS},
        "motion": {
            "zoom": "0:(1.01 + 0.05*fLo)",
            "angle": "0:(2*fHi)",
            "translation_x": "0:(3*sin(t/2))",
            "strength_schedule": "0:(0.6 - 0.2*beat + 0.1*fHi)",
            "noise_schedule": "0:(0.02 + 0.03*fLo)",
            "contrast_schedule": "0:(1.02)",
        },
        "anti_blur": {"amount_schedule": "0:(0.2)"},
        "coherence": {"color_coherence": "LAB", "diffusion_cadence": 1},
    }
    with collecting_notices():
        return settings_from_data(data)


def test_the_live_loop_makes_the_offline_renders_frames_from_the_same_envelopes(tmp_path, tiny):
    settings = reactive_settings(tmp_path)
    source = file_source(stepped_tones(tmp_path / "steps.wav"), loop=True)
    session = LiveSession(settings, tiny, source)
    heard, shown = [], []
    try:
        for _ in range(FRAMES):
            status = session.step()
            heard.append(status.audio)
            shown.append(to_array(session.image))
    finally:
        source.close()
    recorded = {name: np.array([values[name] for values in heard]) for name in heard[0]}
    assert any(recorded[name].std() > 0.05 for name in ("fLo", "fHi")), "the envelopes should move"

    plan = compile_plan(settings, recorded)  # the offline plan, read with the recorded envelopes
    run = RunFolder.create(settings.batch.outdir, settings.batch.batch_name, settings.batch.filename_format, None)
    frames = Modes(settings, plan, tiny, run, lambda event: None, lambda: False, lambda: None).run_mode()

    assert len(frames) == FRAMES
    for index, (path, live) in enumerate(zip(frames, shown, strict=True)):
        offline = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        assert np.array_equal(offline, live), f"frame {index} differs by up to {np.abs(offline - live).max()}"


def test_a_hybrid_edit_mid_run_changes_the_next_frame(tmp_path, pan_video):  # noqa: F811 (the fixture)
    preview = load_backend(ModelSettings(backend="preview"))

    def settings(outdir: str, **hybrid):
        options = {"hybrid_composite": "Normal", "hybrid_comp_alpha_schedule": "0:(0.6)"} | hybrid
        return settings_for(tmp_path, pan_video, outdir, **options)  # as many frames as the video

    plain = render(settings("plain"), backend=preview)
    edited_settings = settings("edited")
    edit = edited_settings.model_copy(
        update={
            "hybrid": edited_settings.hybrid.model_copy(
                update={"hybrid_comp_mask_type": "Difference", "hybrid_comp_mask_inverse": True}
            )
        }
    )
    pending = [edit]
    written: list[int] = []

    def take_update():
        return pending.pop() if len(written) == 3 and pending else None

    edited = render(
        edited_settings,
        backend=preview,
        take_update=take_update,
        on_event=lambda event: written.append(event.index) if isinstance(event, FrameWritten) else None,
    )
    read = [[cv2.imread(str(path)) for path in result.frames] for result in (plain, edited)]
    for index in range(3):
        assert np.array_equal(read[0][index], read[1][index]), f"frame {index} is before the edit"
    assert not np.array_equal(read[0][3], read[1][3]), "the mask edit applies from frame 3"
