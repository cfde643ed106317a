"""Input videos: probe, nth-frame extraction and re-use, lazy frames and masks, the soundtrack."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from media import make_video, solid_frames, with_tone

from engine.errors import DriftwaveError, collecting_notices
from engine.settings import VideoInputSettings
from engine.video import write_video
from engine.video_input import RECORD, VideoFrames, extract_frames, open_video_input, probe

STEP = 12  # gray level of source frame i is i * STEP


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    gray = make_video(root / "gray.mkv", solid_frames([i * STEP for i in range(20)]))
    voiced = with_tone(gray, root / "voiced.mkv")
    mask = make_video(root / "mask.mkv", solid_frames([0, 255, 128], size=(32, 24)))
    return {"gray": gray, "voiced": voiced, "mask": mask}


def levels(frames: list[Path]) -> list[int]:
    return [int(VideoFrames([frame], (64, 48)).frame(0).mean() * 255 + 0.5) for frame in frames]


def extract(video: Path, folder: Path, nth: int = 1, first: int = 0, last: int = -1, overwrite: bool = False):
    return extract_frames(video, folder, nth=nth, first=first, last=last, overwrite=overwrite, field="video_input.x")


def test_probe_reads_rate_size_count_and_audio(videos):
    info = probe(videos["gray"], "video_input.video_init_path")
    assert (info.fps, info.width, info.height, info.frames, info.has_audio) == (10.0, 64, 48, 20, False)
    assert probe(videos["voiced"], "f").has_audio


@pytest.mark.parametrize(
    ("nth", "first", "last", "chosen"),
    [
        (1, 0, -1, list(range(20))),
        (3, 0, -1, [0, 3, 6, 9, 12, 15, 18]),
        (3, 2, 8, [2, 5, 8]),
        (1, 19, 19, [19]),
        (5, 4, 13, [4, 9]),
    ],
)
def test_extracts_the_chosen_source_frames(videos, tmp_path, nth, first, last, chosen):
    frames = extract(videos["gray"], tmp_path, nth, first, last)
    assert [frame.name for frame in frames] == [f"{n:05d}.png" for n in range(1, len(chosen) + 1)]
    assert levels(frames) == [i * STEP for i in chosen]
    assert (tmp_path / RECORD).is_file()


def test_last_past_the_end_extracts_to_the_end_with_a_notice(videos, tmp_path):
    with collecting_notices() as notices:
        frames = extract(videos["gray"], tmp_path, nth=4, first=10, last=50)
    assert levels(frames) == [10 * STEP, 14 * STEP, 18 * STEP]
    assert any("extract_to_frame 50" in notice and "20 frames" in notice for notice in notices)


def test_first_past_the_end_says_how_long_the_video_is(videos, tmp_path):
    with pytest.raises(DriftwaveError) as caught:
        extract(videos["gray"], tmp_path, first=20)
    assert caught.value.field == "video_input.extract_from_frame"
    assert "20 frames" in str(caught.value)
    assert not (tmp_path / RECORD).exists()


def test_last_before_first_is_an_empty_choice(videos, tmp_path):
    with pytest.raises(DriftwaveError) as caught:
        extract(videos["gray"], tmp_path, first=5, last=3)
    assert caught.value.field == "video_input.extract_to_frame"


def test_reuses_a_complete_extraction_without_decoding(videos, tmp_path, monkeypatch):
    frames = extract(videos["gray"], tmp_path, nth=3)
    stamps = [frame.stat().st_mtime_ns for frame in frames]

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", no_decoding)
    assert extract(videos["gray"], tmp_path, nth=3) == frames
    assert [frame.stat().st_mtime_ns for frame in frames] == stamps


def test_extracts_again_on_overwrite_a_new_choice_or_an_interrupted_run(videos, tmp_path):
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    (tmp_path / "00099.png").write_bytes(b"stale")
    frames = extract(videos["gray"], tmp_path, nth=3)
    assert not (tmp_path / "00099.png").exists()
    stamp = frames[0].stat().st_mtime_ns
    assert extract(videos["gray"], tmp_path, nth=3, overwrite=True) == frames
    assert frames[0].stat().st_mtime_ns != stamp

    fewer = extract(videos["gray"], tmp_path, nth=5)
    assert levels(fewer) == [0, 5 * STEP, 10 * STEP, 15 * STEP]
    assert sorted(path.name for path in tmp_path.glob("*.png")) == [frame.name for frame in fewer]

    (tmp_path / RECORD).unlink()
    stamp = fewer[0].stat().st_mtime_ns
    extract(videos["gray"], tmp_path, nth=5)
    assert fewer[0].stat().st_mtime_ns != stamp
    assert keep.read_text() == "mine"


def test_a_changed_source_file_is_extracted_again(videos, tmp_path):
    source = make_video(tmp_path / "clip.mkv", solid_frames([0, 100, 200]))
    assert levels(extract(source, tmp_path / "frames")) == [0, 100, 200]
    make_video(source, solid_frames([50, 150]))
    assert levels(extract(source, tmp_path / "frames")) == [50, 150]


@pytest.mark.parametrize("kind", ["missing", "text", "empty", "audio only"])
def test_unusable_videos_name_the_field(videos, tmp_path, kind):
    path = {
        "missing": tmp_path / "nowhere.mp4",
        "text": tmp_path / "x.mp4",
        "empty": "",
        "audio only": videos["gray"].with_name("tone.wav"),
    }[kind]
    if kind == "text":
        path.write_text("not a video")
    for call in (lambda: probe(path, "video_input.video_init_path"), lambda: extract(path, tmp_path / "out")):
        with pytest.raises(DriftwaveError) as caught:
            call()
        assert caught.value.field in ("video_input.video_init_path", "video_input.x")
        assert "mp4" in caught.value.hint
        assert kind == "empty" or str(path) in str(caught.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_frames_are_tensors_at_the_render_size(videos, tmp_path):
    frames = extract(videos["gray"], tmp_path, nth=3)
    for size in ((64, 48), (32, 24), (96, 72)):
        video = VideoFrames(frames, size)
        assert len(video) == 7
        image = video.frame(2)
        assert image.shape == (1, 3, size[1], size[0])
        assert image.dtype == torch.float32
        assert abs(float(image.mean()) * 255 - 6 * STEP) < 1
        assert video.mask(2) is None


def test_a_short_mask_of_another_size_is_resized_and_its_last_frame_held(videos, tmp_path):
    frames = extract(videos["gray"], tmp_path / "inputframes", nth=3)
    masks = extract(videos["mask"], tmp_path / "maskframes", nth=1)
    with collecting_notices() as notices:
        video = VideoFrames(frames, (64, 48), masks=masks)
    assert any("held" in notice and "3 frames" in notice for notice in notices)
    means = []
    for index in range(len(video)):
        mask = video.mask(index)
        assert mask.shape == (1, 1, 48, 64)
        assert 0 <= float(mask.min()) <= float(mask.max()) <= 1
        means.append(round(float(mask.mean()) * 255))
    assert means == [0, 255, 128, 128, 128, 128, 128]


def test_colors_are_retaken_every_n_frames(videos, tmp_path):
    video = VideoFrames(extract(videos["gray"], tmp_path), (64, 48))
    taken = [round(float(video.color_reference(index, 4).mean()) * 255) for index in range(10)]
    assert taken == [0] * 4 + [4 * STEP] * 4 + [8 * STEP] * 2


def test_open_video_input_extracts_into_the_run_folder(videos, tmp_path):
    settings = VideoInputSettings(
        video_init_path=str(videos["gray"]),
        extract_nth_frame=2,
        extract_from_frame=1,
        extract_to_frame=6,
        use_mask_video=True,
        video_mask_path=str(videos["mask"]),
    )
    with collecting_notices():
        video = open_video_input(settings, tmp_path, (32, 24))
    assert len(video) == 3
    assert sorted(path.name for path in (tmp_path / "inputframes").glob("*.png")) == [
        "00001.png",
        "00002.png",
        "00003.png",
    ]
    assert round(float(video.frame(1).mean()) * 255) == 3 * STEP
    assert round(float(video.mask(0).mean()) * 255) == 255  # mask source frame 1
    assert round(float(video.mask(2).mean()) * 255) == 255  # held: the mask has only frame 1 in 1..6 step 2


def test_the_input_videos_soundtrack_muxes_into_the_render(videos, tmp_path):
    frames = extract(videos["voiced"], tmp_path / "rendered")
    out = write_video(frames, tmp_path / "video.mp4", 10, audio=videos["voiced"])
    info = probe(out, "output")
    assert (info.frames, info.has_audio) == (20, True)
    grays = levels(extract(out, tmp_path / "check"))
    assert np.allclose(grays, [i * STEP for i in range(20)], atol=3)
