"""Values against Deforum's own code (bench/anchors: sd-webui-deforum's files, byte for byte):
every schedule of the published settings files, imported, gives the numbers Deforum's parser
gives; the per-frame steps give what Deforum's functions give; the benches' baselines are
Deforum's functions."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.anchors import (
    DEFORUM_BLOBS,
    DEFORUM_DIR,
    deforum_flow_functions,
    deforum_frame_functions,
    deforum_frame_interpolater,
)
from bench.frame_ops import as_tensor, bench_images, deforum_steps, our_steps
from engine import coherence
from engine.deforum import RENAMED, import_deforum_data
from engine.schedule import NumericSchedule, Timeline, compile_keyframes, compile_schedule
from engine.settings import FIELDS

CORPUS = Path(__file__).parent / "data" / "corpus"
SEED = 1234567  # Deforum replaces -1 with a random seed before it reads the schedules
# the numeric schedules of Deforum's DeformAnimKeys / LooperAnimKeys (animation_key_frames.py)
DEFORUM_SCHEDULES = (
    "angle transform_center_x transform_center_y zoom translation_x translation_y translation_z rotation_3d_x "
    "rotation_3d_y rotation_3d_z perspective_flip_theta perspective_flip_phi perspective_flip_gamma "
    "perspective_flip_fv noise_schedule strength_schedule contrast_schedule cfg_scale_schedule ddim_eta_schedule "
    "subseed_schedule subseed_strength_schedule steps_schedule seed_schedule clipskip_schedule "
    "noise_multiplier_schedule kernel_schedule sigma_schedule amount_schedule threshold_schedule "
    "aspect_ratio_schedule fov_schedule near_schedule far_schedule hybrid_comp_alpha_schedule "
    "hybrid_comp_mask_blend_alpha_schedule hybrid_comp_mask_contrast_schedule"
).split()


def git_blob(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_the_anchor_files_are_deforums_byte_for_byte():
    assert {path.name: git_blob(path) for path in DEFORUM_DIR.glob("*.py")} == DEFORUM_BLOBS


def corpus_files() -> list[Path]:
    files = []
    for path in sorted(CORPUS.iterdir()):
        try:
            data = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(data, dict) and "max_frames" in data:
            files.append(path)
    return files


@pytest.mark.parametrize("path", corpus_files(), ids=lambda path: path.name[:50])
def test_every_schedule_of_a_published_file_gives_deforums_values(path):
    data = {**json.loads(path.read_text()), "seed": SEED}
    data.pop("parseq_manifest", None)  # its values replace the schedules' (tests/test_real_files.py)
    frames = int(data["max_frames"])
    imported = import_deforum_data(data).settings
    interpolater = deforum_frame_interpolater()
    compared = 0
    for key in DEFORUM_SCHEDULES:
        target = RENAMED.get(key, key)
        if key not in data or target not in FIELDS:
            continue
        group, name = FIELDS[target]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas' and numexpr's own
            theirs = np.asarray(interpolater(frames, SEED).parse_inbetweens(str(data[key]), key), dtype=float)
        text = getattr(getattr(imported, group), name)
        timeline = Timeline(frames, float(imported.animation.fps), seed=SEED)
        ours = compile_schedule(text, timeline, blend="hold", field=target).evaluate()
        assert np.allclose(ours, theirs, rtol=0, atol=1e-9), f"{key}: {data[key]!r} read as {text!r}"
        compared += 1
    assert compared >= 5


SCHEDULES = [
    "0:(0.0),1:(0.45),29:(0.45),30:(0.52),31:(0.45),59:(0.45),60:(0.0),61:(0.45),107:(0.45)",  # a real file's
    "0: (1.02), 12: (1.0), 30: (0.98), 45:(1.0)",
    "0:(0), 10:(-.5), 11:(+2.25), 400:(3)",
    "5:(3), 20:(1)",
    "0:(1), 3:(2), 3:(5), 9:(1)",  # a repeated frame: the full reading (the last wins, with a notice)
    "0: 0.5, 7: 0.25",
    "200:(1)",  # nothing before the end in hold mode: the full reading's message
    "0: (1), 119: (2), 120: (3), 99: (4), 1000: (5), 118: (-6.5)",  # as exports write it, around the end
    ", ".join(f"{i}: ({np.sin(i / 7):.4f})" for i in range(300)),  # a per-frame export past the end
]


@pytest.mark.parametrize("text", SCHEDULES)
@pytest.mark.parametrize("blend", ["hold", "tween"])
def test_numbers_only_schedules_read_in_one_pass_give_the_full_readings_values(text, blend):
    timeline = Timeline(120, 24.0)
    try:
        full = compile_keyframes(text, timeline, blend=blend).evaluate()
    except Exception as error:
        with pytest.raises(type(error)):
            compile_schedule(text, timeline, blend=blend)
        return
    fast = compile_schedule(text, timeline, blend=blend)
    assert isinstance(fast, NumericSchedule) == ("3:(5)" not in text and "0: 0.5" not in text)
    assert np.abs(fast.evaluate() - full).max() <= 1e-12
    assert [fast.at(frame) for frame in (0, 4, 30, 119)] == pytest.approx(full[[0, 4, 30, 119]], abs=1e-12)


# -- per-frame work: ours against Deforum's functions, on the bench's frames ------------------


def _as_uint8(image) -> np.ndarray:
    return (image[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy().astype(float)


@pytest.mark.parametrize(
    "step, mean_levels, max_levels",
    [
        ("warp", 0.001, 1),
        ("unsharp mask", 0, 0),
        ("contrast", 0, 0),
        ("perlin grain", 0.05, 1),
        ("colour match (LAB)", 1.5, 8),
    ],
)
def test_each_frame_step_gives_what_deforums_function_gives(step, mean_levels, max_levels):
    frame, reference = bench_images()
    deforum = deforum_steps(deforum_frame_functions(), reference)[step]
    if step == "perlin grain":  # Deforum's frames are BGR there: its first noise channel lands on blue
        theirs = deforum(np.ascontiguousarray(frame[..., ::-1]), 1)[..., ::-1].astype(float)
    else:
        theirs = deforum(frame, 1).astype(float)
    ours = _as_uint8(our_steps(coherence.ColorReference(as_tensor(reference), "LAB"))[step](as_tensor(frame), 1))
    difference = np.abs(theirs - ours)[8:-8, 8:-8]  # the border: OpenCV's and torch's edge rules
    assert difference.mean() <= mean_levels and difference.max() <= max_levels


# -- optical flow (hybrid video, optical-flow cadence, the redo) ---------------------------------------


@pytest.mark.parametrize("method", ["DIS Medium", "DIS Fine", "Farneback"])
def test_the_optical_flow_is_deforums_get_flow_from_images(method):
    import cv2
    from test_hybrid import panned

    from engine.flow import estimate_flow

    first, second = panned(2)
    theirs = deforum_flow_functions().get_flow_from_images(
        cv2.cvtColor(first, cv2.COLOR_RGB2BGR), cv2.cvtColor(second, cv2.COLOR_RGB2BGR), method, None
    )
    assert np.array_equal(estimate_flow(first, second, method), theirs)


def test_moving_along_a_flow_is_deforums_image_transform_optical_flow():
    from test_hybrid import panned, texture

    from engine.flow import along_flow, estimate_flow
    from engine.images import from_array, to_array

    first, second = panned(2)
    flow = estimate_flow(first, second, "DIS Fine") * 3  # a real, uneven flow, made larger
    picture = texture(3, size=first.shape[0])
    theirs = deforum_flow_functions().image_transform_optical_flow(picture.copy(), flow.copy(), 0.7)
    ours = to_array(along_flow(from_array(picture), torch.from_numpy(flow), 0.7))
    inner = (slice(24, -24), slice(24, -24))  # where both read inside the picture (their border reflects)
    difference = np.abs(ours[inner].astype(int) - theirs[inner].astype(int))
    assert difference.max() <= 1  # bilinear both ways, rounded to 8 bits
