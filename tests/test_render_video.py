"""Video Input mode through the render loop: chosen frames, the mask video, colours, sound."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
from media import make_video, with_tone
from runs import same_frames, whole_and_resumed

from engine.backends import load_backend
from engine.errors import DriftwaveError, collecting_notices
from engine.presets import settings_from_data
from engine.render import render
from engine.settings import ModelSettings

W, H = 128, 64


@pytest.fixture(scope="module")
def preview():
    return load_backend(ModelSettings(backend="preview"))


@pytest.fixture(scope="module")
def tiny():
    return load_backend(ModelSettings(backend="tiny"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """12 frames at 10 fps of a bright square crossing a gradient, with a tone."""
    root = tmp_path_factory.mktemp("clip")
    ramp = np.tile(np.linspace(30, 200, W, dtype=np.uint8)[None, :, None], (H, 1, 3))
    frames = []
    for index in range(12):
        frame = ramp.copy()
        frame[20:40, 8 * index : 8 * index + 20] = (250, 60, 40)
        frames.append(frame)
    return with_tone(make_video(root / "silent.mkv", frames), root / "clip.mkv", seconds=1.2)


@pytest.fixture(scope="module")
def half_mask(tmp_path_factory) -> Path:
    """White on the left half (keep the video), black on the right; 3 frames, another size."""
    mask = np.zeros((32, 64, 3), np.uint8)
    mask[:, :32] = 255
    return make_video(tmp_path_factory.mktemp("mask") / "mask.mkv", [mask] * 3)


def settings_for(tmp_path: Path, clip: Path, outdir: str = "out", **groups):
    data = {
        "animation": {"animation_mode": "Video Input"},
        "image": {"W": W, "H": H},
        "sampling": {"seed": 3},
        "batch": {"outdir": str(tmp_path / outdir)},
        "prompts": {"0": "an oil painting"},
        "model": {"backend": "preview"},
        "motion": {"strength_schedule": "0:(0.5)", "noise_schedule": "0:(0)"},
        "coherence": {"diffusion_cadence": 1},
        "video_input": {"video_init_path": str(clip)},
    }
    for group, values in groups.items():
        data[group] = {**data.get(group, {}), **values}
    with collecting_notices():
        return settings_from_data(data)


def read(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype(float)


def test_every_nth_frame_is_restyled_at_the_videos_rate(tmp_path, preview, clip):
    result = render(settings_for(tmp_path, clip, video_input={"extract_nth_frame": 3}), backend=preview)
    assert len(result.frames) == 4 and result.settings.animation.max_frames == 4
    assert result.settings.animation.fps == pytest.approx(10 / 3)
    count, seconds = imageio_ffmpeg.count_frames_and_secs(str(result.video))
    assert count == 4 and seconds == pytest.approx(4 / (10 / 3), abs=0.1)
    # each frame follows its video frame: the square moved 24 px between chosen frames
    redness = [(read(path)[25:35, :, 0] - read(path)[25:35, :, 1]).mean(axis=0) for path in result.frames]
    left_edges = [int(np.argmax(np.convolve(row, np.ones(20), "valid"))) for row in redness]
    assert left_edges == pytest.approx([0, 24, 48, 72], abs=2)


def test_a_set_fps_is_kept(tmp_path, preview, clip):
    result = render(settings_for(tmp_path, clip, animation={"fps": 24}), backend=preview)
    assert result.settings.animation.fps == 24 and len(result.frames) == 12


def test_the_mask_video_keeps_its_white_areas_unchanged(tmp_path, tiny, clip, half_mask):
    settings = settings_for(
        tmp_path,
        clip,
        video_input={"use_mask_video": True, "video_mask_path": str(half_mask)},
        coherence={"color_coherence": "None", "diffusion_cadence": 1},
        model={"backend": "tiny"},
    )
    with collecting_notices() as notices:
        result = render(settings, backend=tiny)
    assert any("held" in str(notice) for notice in notices)  # the 3-frame mask holds its last frame
    extracted = sorted((result.folder.parent / "inputframes").glob("*.png"))
    for index in (0, 7, 11):
        out, source = read(result.frames[index]), read(extracted[index])
        assert np.abs(out[:, : W // 2 - 4] - source[:, : W // 2 - 4]).max() <= 1  # kept
        assert np.abs(out[:, W // 2 + 4 :] - source[:, W // 2 + 4 :]).mean() > 5  # restyled


def test_video_input_colour_coherence_follows_the_video(tmp_path, tiny, clip):
    def colour_error(coherence: str) -> float:
        settings = settings_for(
            tmp_path,
            clip,
            coherence.lower(),
            coherence={"color_coherence": coherence, "color_coherence_video_every_N_frames": 2},
            motion={"strength_schedule": "0:(0.9)", "noise_schedule": "0:(0)"},
            model={"backend": "tiny"},
        )
        result = render(settings, backend=tiny)
        extracted = sorted((result.folder.parent / "inputframes").glob("*.png"))
        means = [read(path).mean(axis=(0, 1)) for path in result.frames]
        return float(
            np.mean([np.abs(m - read(extracted[i - i % 2]).mean(axis=(0, 1))).mean() for i, m in enumerate(means)])
        )

    assert colour_error("Video Input") < 0.5 * colour_error("None")


def test_the_init_videos_sound_is_carried_to_the_output(tmp_path, preview, clip):
    result = render(settings_for(tmp_path, clip, video={"soundtrack": "init video"}), backend=preview)
    log = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(result.video)], capture_output=True, text=True
    ).stderr
    assert re.search(r"Stream #.*: Audio: aac", log) and re.search(r"Stream #.*: Video: h264", log)


def test_extracted_frames_are_reused_by_the_next_run_of_the_batch(tmp_path, preview, clip):
    render(settings_for(tmp_path, clip), backend=preview)
    first = sorted((tmp_path / "out" / "driftwave" / "inputframes").glob("*.png"))
    stamps = [path.stat().st_mtime_ns for path in first]
    render(settings_for(tmp_path, clip), backend=preview)
    assert [path.stat().st_mtime_ns for path in first] == stamps
    render(settings_for(tmp_path, clip, video_input={"overwrite_extracted_frames": True}), backend=preview)
    assert [path.stat().st_mtime_ns for path in first] != stamps


def test_resume_continues_the_video(tmp_path, preview, clip):
    whole, resumed = whole_and_resumed(lambda outdir: settings_for(tmp_path, clip, outdir), preview, stop_after=5)
    assert same_frames(whole, resumed)


@pytest.mark.parametrize(
    ("video_input", "field"),
    [
        ({"video_init_path": "nowhere.mp4"}, "video_input.video_init_path"),
        ({"use_mask_video": True, "video_mask_path": "nomask.mp4"}, "video_input.video_mask_path"),
        ({"extract_from_frame": 40}, "video_input.extract_from_frame"),
    ],
)
def test_bad_video_settings_stop_before_the_first_frame(tmp_path, preview, clip, video_input, field):
    with pytest.raises(DriftwaveError) as caught:
        render(settings_for(tmp_path, clip, video_input=video_input), backend=preview)
    assert caught.value.field == field
    assert not (tmp_path / "out").exists()
