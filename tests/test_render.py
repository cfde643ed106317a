"""The render loop with real backends (tiny diffusers on CPU, preview): modes, cadence, seeds,
strength and steps, masks, outputs, video, resume."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
import soundfile
import torch

from engine.backends import GenerationRequest, load_backend
from engine.errors import DriftwaveError, SettingsError, collecting_notices
from engine.modes import Interrupted
from engine.presets import load_preset, settings_from_data
from engine.protocol import Done, FrameWritten, Progress
from engine.render import render
from engine.settings import ModelSettings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny():
    return load_backend(ModelSettings(backend="tiny"))


@pytest.fixture(scope="session")
def preview():
    return load_backend(ModelSettings(backend="preview"))


class Recorder:
    """A real backend, with every request and image it made kept for the test to look at."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.name, self.device = backend.name, backend.device
        self.requests: list[GenerationRequest] = []
        self.images: list[torch.Tensor] = []

    def generate(self, request: GenerationRequest) -> torch.Tensor:
        image = self.backend.generate(request)
        self.requests.append(request)
        self.images.append(image)
        return image


def make_settings(tmp_path: Path, **groups) -> object:
    data = {
        "animation": {"max_frames": 6},
        "image": {"W": 64, "H": 64},
        "sampling": {"seed": 11, "steps": 4, "scale": "2"},
        "batch": {"outdir": str(tmp_path / "out")},
        "prompts": {"0": "a red fox", "3": "a blue whale"},
        "model": {"backend": "tiny"},
    }
    for group, values in groups.items():
        merge = isinstance(values, dict) and group != "prompts"
        data[group] = {**data.get(group, {}), **values} if merge else values
    with collecting_notices():
        return settings_from_data(data)


def frame(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def still(**motion) -> dict:
    return {"zoom": "1", "angle": "0", "translation_x": "0", "translation_y": "0", **motion}


# -- 2D, outputs --------------------------------------------------------------------------------------


def test_2d_render_writes_frames_settings_state_and_video(tmp_path, tiny):
    settings = make_settings(tmp_path)
    events = []
    result = render(settings, backend=tiny, on_event=events.append)
    assert [p.name for p in result.frames] == [f"{i:06d}.png" for i in range(6)]
    assert all(frame(p).shape == (64, 64, 3) for p in result.frames)
    assert (result.folder / "state.json").exists()
    saved = load_preset(result.folder / "settings.toml").settings
    assert saved == settings and saved.sampling.seed == 11
    assert "Rendered with: diffusers (tiny)" in (result.folder / "settings.toml").read_text()
    count, seconds = imageio_ffmpeg.count_frames_and_secs(str(result.video))
    assert count == 6 and seconds == pytest.approx(6 / 15, abs=0.05)
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[-1].frame == 6 and progress[-1].total == 6
    assert isinstance(events[-1], Done) and str(result.video) in events[-1].outputs
    assert result.folder.parent.parent == tmp_path / "out" and result.folder.parent.name == "driftwave"


def test_seed_minus_one_is_picked_and_recorded(tmp_path, preview):
    result = render(make_settings(tmp_path, sampling={"seed": -1}, model={"backend": "preview"}), backend=preview)
    seed = load_preset(result.folder / "settings.toml").settings.sampling.seed
    assert seed != -1 and result.settings.sampling.seed == seed


def test_16_bit_frames(tmp_path, preview):
    result = render(
        make_settings(tmp_path, image={"bit_depth_output": 16}, animation={"max_frames": 2}), backend=preview
    )
    assert frame(result.frames[0]).dtype == np.uint16


def test_preview_demo_preset_visibly_moves(tmp_path, preview):
    with collecting_notices():
        settings = load_preset(
            ROOT / "presets" / "demo.toml", [f"outdir={tmp_path}", "backend=preview", "W=128", "H=128", "max_frames=24"]
        ).settings
    result = render(settings, backend=preview)
    first, middle, last = (frame(result.frames[i]).astype(float) for i in (0, 12, 23))
    assert np.abs(middle - first).mean() > 10 and np.abs(last - middle).mean() > 10
    assert np.abs(frame(result.frames[1]).astype(float) - first).mean() < np.abs(last - first).mean()


# -- cadence, seeds, strength, steps --------------------------------------------------------------------


def test_cadence_diffuses_every_nth_frame_and_cross_fades_between(tmp_path, tiny):
    spy = Recorder(tiny)
    settings = make_settings(
        tmp_path,
        animation={"max_frames": 7},
        coherence={"diffusion_cadence": 3, "color_coherence": "None"},
        motion=still(noise_schedule="0"),
    )
    result = render(settings, backend=spy)
    assert len(spy.requests) == math.ceil(7 / 3) and len(result.frames) == 7
    images = [np.round(i[0].permute(1, 2, 0).numpy() * 255)[..., ::-1] for i in spy.images]
    # with no motion, frame j of group k is (1 - w)·D(k-1) + w·D(k), w = (j - 3k + 1) / 3
    for index in range(7):
        group, share = index // 3, (index % 3 + 1) / 3
        expected = images[group] if group == 0 else (1 - share) * images[group - 1] + share * images[group]
        assert np.abs(frame(result.frames[index]).astype(float) - expected).max() <= 1.0, index


@pytest.mark.parametrize(
    ("behavior", "expected"),
    [("iter", [11, 12, 13, 14]), ("fixed", [11] * 4), ("ladder", [11, 13, 12, 14]), ("alternate", [11, 12, 11, 12])],
)
def test_seed_behaviours(tmp_path, preview, behavior, expected):
    spy = Recorder(preview)
    render(
        make_settings(
            tmp_path, batch={"seed_behavior": behavior}, coherence={"diffusion_cadence": 1}, animation={"max_frames": 4}
        ),
        backend=spy,
    )
    assert [r.seed for r in spy.requests] == expected


def test_strength_schedule_sets_the_steps_run(tmp_path, tiny):
    calls = []
    hook = tiny.unet.register_forward_hook(lambda *args: calls.append(1))
    try:
        settings = make_settings(
            tmp_path,
            animation={"max_frames": 3},
            coherence={"diffusion_cadence": 1},
            sampling={"steps": 10, "scale": "1"},
            motion={"strength_schedule": "0:(0.3), 2:(0.75)"},
        )
        render(settings, backend=tiny)
    finally:
        hook.remove()
    # frame 0 runs every step; then steps - strength·steps: 10 - 0.525·10 -> 4, 10 - 0.75·10 -> 2
    assert len(calls) == 10 + 4 + 2


def test_sampler_and_scale_schedules_reach_the_backend(tmp_path, preview):
    spy = Recorder(preview)
    render(
        make_settings(
            tmp_path,
            animation={"max_frames": 4},
            coherence={"diffusion_cadence": 1},
            sampling={
                "enable_sampler_scheduling": True,
                "sampler_schedule": '0:("euler"), 2:("DDIM")',
                "scale": "0:(3), 3:(6)",
            },
        ),
        backend=spy,
    )
    assert [r.sampler for r in spy.requests] == ["euler", "euler", "ddim", "ddim"]
    assert [r.cfg for r in spy.requests] == [3, 4, 5, 6]


@pytest.mark.parametrize(
    "sampler",
    ["euler", "euler_a", "heun", "lms", "dpm2_a", "dpmpp_2m_karras", "ddim", "dpmpp_2s_a", "dpmpp_sde", "unipc", "lcm"],
)
def test_every_sampler_family_runs_img2img(tmp_path, tiny, sampler):
    settings = make_settings(
        tmp_path,
        animation={"max_frames": 2},
        coherence={"diffusion_cadence": 1},
        sampling={"sampler": sampler, "steps": 4},
    )
    result = render(settings, backend=tiny)
    assert len(result.frames) == 2 and frame(result.frames[1]).std() > 0


# -- init image and masks -------------------------------------------------------------------------------


def test_init_image_and_mask_keep_the_light_area(tmp_path, tiny):
    init = np.zeros((64, 64, 3), np.uint8)
    init[:, :, 1] = 200
    cv2.imwrite(str(tmp_path / "init.png"), init)
    mask = np.zeros((64, 64), np.uint8)
    mask[:, :32] = 255  # light = keep
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    settings = make_settings(
        tmp_path,
        animation={"max_frames": 1},
        init={
            "use_init": True,
            "init_image": str(tmp_path / "init.png"),
            "strength": 0.5,
            "use_mask": True,
            "mask_file": str(tmp_path / "mask.png"),
            "overlay_mask": True,
            "mask_overlay_blur": 0,
        },
        coherence={"color_coherence": "None"},
    )
    out = frame(render(settings, backend=tiny).frames[0]).astype(float)
    assert np.abs(out[:, :28] - init[:, :28]).max() <= 1  # kept (the blurred seam aside)
    assert np.abs(out[:, 36:] - init[:, 36:]).mean() > 20  # diffused


def test_missing_inputs_fail_before_the_first_frame(tmp_path, tiny):
    out = tmp_path / "out"
    cases = [
        ({"init": {"use_init": True, "init_image": str(tmp_path / "nope.png")}}, "init.init_image"),
        ({"init": {"use_mask": True, "mask_file": str(tmp_path / "nope.png")}}, "init.mask_file"),
        ({"animation": {"animation_mode": "3D"}}, "depth.depth_model"),  # the default model: offline in tests
        ({"batch": {"filename_format": "{frame}.png"}}, "batch.filename_format"),
        ({"audio": {"file": str(tmp_path / "nope.wav")}, "motion": {"zoom": "0:(1+amp)"}}, "audio.file"),  # read
    ]
    for groups, field in cases:
        with pytest.raises(DriftwaveError) as caught:
            render(make_settings(tmp_path, **groups), backend=tiny)
        assert caught.value.field == field
    assert not out.exists()  # nothing was started


def test_unwritable_outdir(tmp_path, preview):
    (tmp_path / "blocked").write_text("a file, not a folder")
    with pytest.raises(DriftwaveError) as caught:
        render(make_settings(tmp_path, batch={"outdir": str(tmp_path / "blocked")}), backend=preview)
    assert caught.value.field == "batch.outdir"


def test_a_failing_write_keeps_finished_frames_and_state(tmp_path, preview):
    settings = make_settings(tmp_path, coherence={"diffusion_cadence": 1})

    def block_frame_3(event):
        if isinstance(event, FrameWritten) and event.index == 2:
            (Path(event.path).parent / ".000003.png.part").mkdir()  # the next write cannot land

    with pytest.raises(DriftwaveError, match="cannot write"):
        render(settings, backend=preview, on_event=block_frame_3)
    folder = next((tmp_path / "out" / "driftwave").iterdir())
    assert sorted(p.name for p in (folder / "frames").glob("*.png")) == ["000000.png", "000001.png", "000002.png"]
    assert '"next_group": 3' in (folder / "state.json").read_text()


# -- resume ---------------------------------------------------------------------------------------------


def test_resume_reproduces_an_uninterrupted_run_pixel_for_pixel(tmp_path, tiny):
    def settings(outdir):
        return make_settings(
            tmp_path,
            animation={"max_frames": 12},
            coherence={"diffusion_cadence": 2},
            batch={"outdir": str(tmp_path / outdir)},
            motion={"zoom": "0:(1.05)", "angle": "0:(3)", "noise_schedule": "0:(0.04)"},
        )

    whole = render(settings("whole"), backend=tiny)
    written = []

    def stop_after_5():
        return len(written) >= 5

    with pytest.raises(Interrupted):
        render(
            settings("parts"),
            backend=tiny,
            should_stop=stop_after_5,
            on_event=lambda e: written.append(e) if isinstance(e, FrameWritten) else None,
        )
    timestring = next((tmp_path / "parts" / "driftwave").iterdir()).name
    resumed = render(settings("parts"), backend=tiny, resume=timestring)
    assert len(resumed.frames) == len(whole.frames) == 12
    for a, b in zip(whole.frames, resumed.frames, strict=True):
        assert np.array_equal(frame(a), frame(b)), a.name


def test_resume_of_an_unknown_run_says_which_exist(tmp_path, preview):
    with pytest.raises(DriftwaveError, match="no run 19990101000000"):
        render(make_settings(tmp_path), backend=preview, resume="19990101000000")


# -- other modes ----------------------------------------------------------------------------------------


def test_interpolation_blends_conditioning_between_keyed_prompts(tmp_path, tiny):
    spy = Recorder(tiny)
    settings = make_settings(
        tmp_path,
        animation={"animation_mode": "Interpolation"},
        prompts={"0": "a red fox", "8": "a blue whale"},
        interpolation={"interpolate_key_frames": True},
        batch={"seed_behavior": "fixed"},
    )
    result = render(settings, backend=spy)
    assert len(result.frames) == 9 and result.video is not None
    weights = [dict((sub.plain, w) for sub, w in r.prompt.positive) for r in spy.requests]
    assert weights[0] == {"a red fox": 1.0} and weights[8] == {"a blue whale": 1.0}
    assert weights[4] == {"a red fox": 0.5, "a blue whale": 0.5}
    assert all(r.init is None for r in spy.requests)


def test_interpolation_x_frames_spacing(tmp_path, preview):
    settings = make_settings(
        tmp_path,
        animation={"animation_mode": "Interpolation"},
        prompts={"0": "a", "30": "b", "90": "c"},
        interpolation={"interpolate_x_frames": 3},
    )
    assert len(render(settings, backend=preview).frames) == 9  # keys at 0, 4, 8


def test_none_mode_renders_stills_and_a_grid(tmp_path, tiny):
    settings = make_settings(
        tmp_path,
        animation={"animation_mode": "None"},
        prompting={"still_prompts": ["a lake", "a portrait"]},
        batch={"n_samples": 2, "make_grid": True, "grid_rows": 2, "filename_format": "{index:03d}_{seed}_{prompt}.png"},
    )
    result = render(settings, backend=tiny)
    names = [p.name for p in result.frames]
    assert names[:4] == ["000_11_a_lake.png", "001_12_a_lake.png", "002_13_a_portrait.png", "003_14_a_portrait.png"]
    assert names[4] == "grid.png" and frame(result.frames[4]).shape == (128, 128, 3)
    assert result.video is None


# -- video and soundtrack -------------------------------------------------------------------------------


def test_video_carries_the_soundtrack(tmp_path, preview):
    rate = 22050
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(rate * 2) / rate)
    soundfile.write(tmp_path / "tone.wav", tone, rate)
    settings = make_settings(
        tmp_path,
        audio={"file": str(tmp_path / "tone.wav"), "offset": 0.5},
        animation={"max_frames": 15, "fps": 10},
        video={"make_gif": True},
    )
    result = render(settings, backend=preview)
    probe = (
        __import__("subprocess")
        .run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(result.video)], capture_output=True, text=True)
        .stderr
    )
    assert "Audio: aac" in probe and "Video: h264" in probe and "yuv420p" in probe
    assert imageio_ffmpeg.count_frames_and_secs(str(result.video))[0] == 15
    assert (result.folder / "video.gif").stat().st_size > 0


def test_max_video_frames_limits_the_video(tmp_path, preview):
    result = render(make_settings(tmp_path, video={"max_video_frames": 4}), backend=preview)
    assert imageio_ffmpeg.count_frames_and_secs(str(result.video))[0] == 4 and len(result.frames) == 6


def test_bad_filename_format_is_a_settings_error(tmp_path, preview):
    with pytest.raises(SettingsError, match=r"needs \{index\}"):
        render(make_settings(tmp_path, batch={"filename_format": "frame.png"}), backend=preview)
