"""Frame interpolation of the output (Deforum's RIFE/FILM step, by optical flow): N frames per
rendered frame, the in-betweens along the motion, the soundtrack still in sync; slow motion."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile
from test_flow_cadence import shift_between
from test_hybrid import texture

from engine.backends import load_backend
from engine.deforum import import_deforum_data
from engine.errors import collecting_notices
from engine.frame_interpolation import flow_inbetweens, interpolated
from engine.images import from_array, write_image
from engine.presets import settings_from_data
from engine.render import render
from engine.settings import ModelSettings
from engine.video import read_frame

RATE, CLICK = 48000, 1.5  # a click 1.5 s into the track


@pytest.fixture(scope="module")
def preview():
    return load_backend(ModelSettings(backend="preview"))


@pytest.fixture
def click(tmp_path) -> Path:
    sound = np.zeros(RATE * 4, np.float32)
    sound[int(CLICK * RATE) : int(CLICK * RATE) + 48] = 0.9
    soundfile.write(tmp_path / "click.wav", sound, RATE)
    return tmp_path / "click.wav"


def settings_for(tmp_path: Path, audio: Path | None, **video):
    data = {
        "animation": {"animation_mode": "2D", "max_frames": 30, "fps": 10},
        "image": {"W": 64, "H": 64},
        "batch": {"outdir": str(tmp_path / "out")},
        "prompts": {"0": "waves"},
        "model": {"backend": "preview"},
        "motion": {"translation_x": "0:(3)", "zoom": "0:(1)", "angle": "0:(0)"},
        "coherence": {"diffusion_cadence": 1},
        "audio": {"file": str(audio) if audio else ""},
        "video": {"frame_interpolation_engine": "Flow", **video},
    }
    with collecting_notices():
        return settings_from_data(data)


def frames_of(video: Path, size: int = 64) -> list[np.ndarray]:
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(video), "-f", "rawvideo"]
    pixels = subprocess.run([*command, "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return list(np.frombuffer(pixels, np.uint8).reshape(-1, size, size, 3))


def click_time(video: Path) -> float:
    """Seconds into the video's sound where it is loudest."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(video), "-map", "0:a"]
    command += ["-f", "f32le", "-ac", "1", "-ar", str(RATE), "-"]
    sound = np.frombuffer(subprocess.run(command, capture_output=True, check=True).stdout, np.float32)
    return float(np.argmax(np.abs(sound))) / RATE


def has_sound(video: Path) -> bool:
    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(video)], capture_output=True, text=True)
    return "Audio:" in probe.stderr


def test_in_betweens_lie_along_the_motion_and_the_last_frame_is_held(tmp_path):
    first = texture(size=128)
    second = np.roll(first, 8, axis=1)
    paths = [write_image(from_array(picture), tmp_path / f"{n}.png") for n, picture in enumerate((first, second))]
    pictures = list(interpolated(paths, 4, flow_inbetweens))
    assert len(pictures) == 8  # N per rendered frame, the last one held
    shifts = [shift_between(first, picture) for picture in pictures]
    assert shifts == pytest.approx([0, 2, 4, 6, 8, 8, 8, 8], abs=0.5)
    assert np.array_equal(pictures[0], first) and all(np.array_equal(p, second) for p in pictures[4:])


def test_interpolation_doubles_the_frames_with_the_click_still_in_sync(tmp_path, preview, click):
    result = render(settings_for(tmp_path, click), backend=preview)
    doubled = result.folder / "video_x2.mp4"
    smooth = frames_of(doubled)
    assert (len(frames_of(result.video)), len(smooth)) == (30, 60)
    assert imageio_ffmpeg.count_frames_and_secs(str(doubled))[1] == pytest.approx(3.0, abs=0.01)  # as long
    assert click_time(doubled) == pytest.approx(click_time(result.video), abs=0.002)
    assert click_time(doubled) == pytest.approx(CLICK, abs=0.03)  # the track's click, where it was
    at_click = read_frame(result.frames[round(CLICK * 10)])  # the rendered frame shown at the click
    nearest = min(range(60), key=lambda k: np.abs(smooth[k].astype(int) - at_click).mean())
    assert nearest == 2 * round(CLICK * 10)  # is the doubled video's frame at the click
    assert not (result.folder / "interpolated_x2").exists()


def test_slow_motion_plays_slower_and_silent_and_the_frames_can_be_kept(tmp_path, preview, click):
    options = {"frame_interpolation_x_amount": 3, "frame_interpolation_slow_mo_enabled": True}
    options |= {"frame_interpolation_slow_mo_amount": 3, "frame_interpolation_keep_imgs": True}
    result = render(settings_for(tmp_path, click, **options), backend=preview)
    slow = result.folder / "video_x3_slow3.mp4"
    count, seconds = imageio_ffmpeg.count_frames_and_secs(str(slow))
    assert count == 90 and seconds == pytest.approx(9.0, abs=0.01)  # 30 fps x3, three times slower: 10 fps
    assert has_sound(result.video) and not has_sound(slow)  # Deforum drops the sound of slow motion
    assert len(list((result.folder / "interpolated_x3").glob("*.png"))) == 90


def test_a1111_files_import_the_interpolation_keys_and_film_interpolates_by_flow():
    data = {
        "animation_mode": "2D",
        "deforum_git_commit_id": "3224268",
        "frame_interpolation_engine": "FILM",
        "frame_interpolation_x_amount": 4,
        "frame_interpolation_slow_mo_enabled": False,
        "frame_interpolation_slow_mo_amount": 2,
        "frame_interpolation_keep_imgs": True,
    }
    imported = import_deforum_data(data)
    video = imported.settings.video
    assert (video.frame_interpolation_engine, video.frame_interpolation_x_amount) == ("Flow", 4)
    assert video.frame_interpolation_keep_imgs
    assert any("'FILM' needs its model" in warning for warning in imported.warnings)
