"""Hybrid video: the video's motion measured and carried into the render, composites and masks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from media import make_video
from runs import same_frames, whole_and_resumed

from engine.backends import load_backend
from engine.errors import DriftwaveError, collecting_notices
from engine.flow import consistency_mask, estimate_flow, flow_grid
from engine.hybrid import HybridVideo, auto_contrast, contrast, equalize, estimate_matrix
from engine.motion import warp
from engine.plan import compile_run
from engine.presets import settings_from_data
from engine.render import render
from engine.settings import ModelSettings

W, H = 128, 128
SHIFT = (4, -2)  # pixels per frame the synthetic camera pans


def texture(seed: int = 0, size: int = 256) -> np.ndarray:
    """A detailed RGB texture with corners to track."""
    rng = np.random.default_rng(seed)
    coarse = (rng.random((size // 8, size // 8, 3)) * 255).astype(np.uint8)
    image = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    for _ in range(40):
        x, y = rng.integers(0, size - 12, 2)
        cv2.rectangle(
            image, (int(x), int(y)), (int(x) + 10, int(y) + 10), tuple(int(c) for c in rng.integers(0, 255, 3)), -1
        )
    return image


def panned(frames: int, shift=SHIFT) -> list[np.ndarray]:
    """Frames of a camera panning over the texture: content moves by ``shift`` each frame."""
    big = texture()
    start = (64, 64)
    return [
        big[
            start[1] - i * shift[1] : start[1] - i * shift[1] + H, start[0] - i * shift[0] : start[0] - i * shift[0] + W
        ]
        for i in range(frames)
    ]


@pytest.fixture(scope="module")
def preview():
    return load_backend(ModelSettings(backend="preview"))


@pytest.fixture(scope="module")
def pan_video(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("pan") / "pan.mkv", [np.ascontiguousarray(f) for f in panned(8)])


def settings_for(tmp_path: Path, video: Path, outdir: str = "out", **hybrid):
    data = {
        "animation": {"animation_mode": "2D", "max_frames": 100},
        "image": {"W": W, "H": H},
        "sampling": {"seed": 9},
        "batch": {"outdir": str(tmp_path / outdir)},
        "prompts": {"0": "a tapestry"},
        "model": {"backend": "preview"},
        "motion": {"zoom": "0:(1)", "angle": "0:(0)", "translation_x": "0:(0)", "strength_schedule": "0:(0.95)"},
        "coherence": {"diffusion_cadence": 1, "color_coherence": "None"},
        "init": {"strength": 0.95},
        "motion_noise": {},
        "video_input": {"video_init_path": str(video)},
        "hybrid": hybrid,
    }
    data["motion"]["noise_schedule"] = "0:(0)"
    data.pop("motion_noise")
    with collecting_notices():
        return settings_from_data(data)


def gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def read(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def shift_between(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    (dx, dy), _ = cv2.phaseCorrelate(gray(a).astype(np.float64), gray(b).astype(np.float64))
    return dx, dy


# -- measuring ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["Affine", "Perspective"])
def test_ransac_matrices_recover_a_known_shift(kind):
    first, second = panned(2)
    matrix = estimate_matrix(gray(first), gray(second), kind)
    for x, y in ((32, 32), (64, 64), (96, 96)):  # every point moves by the shift
        moved = matrix @ np.array([x, y, 1.0])
        assert moved[:2] / moved[2] - (x, y) == pytest.approx(SHIFT, abs=0.4)


@pytest.mark.parametrize("method", ["DIS Medium", "DIS Fine", "Farneback"])
def test_optical_flow_recovers_a_known_shift(method):
    first, second = panned(2)
    flow = estimate_flow(first, second, method)
    inner = flow[16:-16, 16:-16].reshape(-1, 2)
    assert np.median(inner, axis=0) == pytest.approx(SHIFT, abs=0.3)


def test_consistent_flow_keeps_a_clean_pan_and_drops_contradictions():
    first, second = panned(2)
    forward, backward = estimate_flow(first, second, "DIS Medium"), estimate_flow(second, first, "DIS Medium")
    assert consistency_mask(forward, backward, 0)[16:-16, 16:-16].mean() > 0.95
    assert consistency_mask(forward, forward, 2)[16:-16, 16:-16].mean() < 0.05  # there and "back" the same way


def test_flow_grid_moves_the_picture_along_the_flow():
    picture = torch.zeros(1, 3, 32, 32)
    picture[..., 10:14, 10:14] = 1
    flow = torch.zeros(32, 32, 2)
    flow[..., 0], flow[..., 1] = 3, -2
    moved = warp(picture, flow_grid(flow), border="zeros")
    assert torch.allclose(moved[..., 8:12, 13:17], torch.ones(1, 3, 4, 4))


@pytest.mark.skipif(hasattr(getattr(cv2, "optflow", None), "calcOpticalFlowDenseRLOF"), reason="opencv-contrib here")
def test_flows_this_opencv_lacks_are_named_before_the_first_frame(tmp_path, preview, pan_video):
    settings = settings_for(tmp_path, pan_video, hybrid_motion="Optical Flow", hybrid_flow_method="DenseRLOF")
    with pytest.raises(DriftwaveError, match="opencv-contrib") as caught:
        render(settings, backend=preview)
    assert caught.value.field == "hybrid.hybrid_flow_method" and "DIS Medium" in caught.value.hint
    assert not (tmp_path / "out").exists()


# -- masks ----------------------------------------------------------------------------------------------


def test_mask_adjustments():
    ramp = torch.linspace(0.4, 0.6, 256).view(1, 1, 16, 16)
    flat = equalize(ramp)
    assert flat.min() == 0 and flat.max() == 1 and (flat.flatten().diff() >= 0).all()
    assert contrast(ramp, 2.0).std() == pytest.approx(2 * ramp.std(), rel=0.01)
    stretched = auto_contrast(ramp, 10, 90)
    assert (stretched == 0).float().mean() == pytest.approx(0.1, abs=0.01)
    assert (stretched == 1).float().mean() == pytest.approx(0.1, abs=0.01)


# -- through the render loop ------------------------------------------------------------------------------


@pytest.mark.parametrize(("motion", "method"), [("Affine", "DIS Medium"), ("Optical Flow", "DIS Medium")])
def test_the_render_pans_with_the_video(tmp_path, preview, pan_video, motion, method):
    result = render(settings_for(tmp_path, pan_video, hybrid_motion=motion, hybrid_flow_method=method), backend=preview)
    assert len(result.frames) == 8  # one per video frame
    frames = [read(path) for path in result.frames]
    video = panned(8)
    assert np.abs(frames[0].astype(float) - video[0]).mean() < 6  # started from the video's first frame
    dx, dy = shift_between(frames[0], frames[4])
    assert (dx, dy) == pytest.approx((4 * SHIFT[0], 4 * SHIFT[1]), abs=1.0)


def test_without_hybrid_motion_the_render_stays(tmp_path, preview, pan_video):
    result = render(
        settings_for(tmp_path, pan_video, hybrid_composite="Normal", hybrid_comp_alpha_schedule="0:(0)"),
        backend=preview,
    )
    frames = [read(path) for path in result.frames]
    assert shift_between(frames[0], frames[4]) == pytest.approx((0, 0), abs=0.3)


def test_a_full_composite_after_generation_shows_the_video(tmp_path, preview, pan_video):
    settings = settings_for(
        tmp_path, pan_video, hybrid_composite="After Generation", hybrid_comp_alpha_schedule="0:(1)",
        hybrid_comp_save_extra_frames=True,
    )  # fmt: skip
    result = render(settings, backend=preview)
    for index, expected in zip(range(1, 8), panned(8)[1:], strict=True):
        assert np.abs(read(result.frames[index]).astype(float) - expected).max() <= 1
    assert (result.folder / "hybridframes" / "blend_00003.png").exists()


@pytest.mark.parametrize(("inverse", "patch"), [(False, 0.9 * 1.0 + 0.1 * 0.1), (True, 0.1 * 1.0 + 0.9 * 0.1)])
def test_a_difference_mask_keeps_the_render_where_it_differs(tmp_path, pan_video, inverse, patch):
    settings = settings_for(
        tmp_path, pan_video, hybrid_composite="Normal", hybrid_comp_mask_type="Difference",
        hybrid_comp_mask_inverse=inverse, hybrid_comp_alpha_schedule="0:(1)",
    )  # fmt: skip
    video = torch.full((1, 3, 32, 32), 0.1)
    image = video.clone()
    image[..., 8:16, 8:16] = 1.0  # the render differs from the video here only
    hybrid = HybridVideo(settings, lambda frame: video, None, None)
    mixed = hybrid.composite(image, 0, compile_run(settings).frame(0).hybrid)
    # the mask is the difference, 0.9, in the patch (0.1 inverted): mostly the render there
    assert torch.allclose(mixed[..., 8:16, 8:16], torch.full((1, 3, 8, 8), patch), atol=1e-3)
    assert torch.allclose(mixed[..., 20:, 20:], video[..., 20:, 20:])


def test_hybrid_resume_reproduces_the_run(tmp_path, preview, pan_video):
    def settings(outdir):
        return settings_for(tmp_path, pan_video, outdir, hybrid_motion="Optical Flow", hybrid_composite="Normal")

    whole, resumed = whole_and_resumed(settings, preview, stop_after=3)
    assert same_frames(whole, resumed)


def test_the_video_can_be_the_init_mse_image(tmp_path, pan_video):
    tiny = load_backend(ModelSettings(backend="tiny"))
    settings = settings_for(tmp_path, pan_video, hybrid_composite="None", hybrid_motion="Affine")
    settings = settings.model_copy(
        update={
            "model": settings.model.model_copy(update={"backend": "tiny"}),
            "animation": settings.animation.model_copy(update={"max_frames": 3}),
            "hybrid": settings.hybrid.model_copy(update={"hybrid_use_video_as_mse_image": True}),
            "guidance": settings.guidance.model_copy(
                update={
                    "init_mse_scale": "0:(40000)",
                    "decode_method": "autoencoder",
                    "grad_threshold_type": "static",
                    "clamp_grad_threshold": 50.0,
                    "grad_inject_timing": "none",
                }
            ),
        }
    )
    guided = render(settings, backend=tiny)
    plain = render(
        settings.model_copy(update={"guidance": settings.guidance.model_copy(update={"init_mse_scale": "0"})}),
        backend=tiny,
    )
    video = panned(8)
    errors = [np.mean((read(result.frames[1]).astype(float) - video[1]) ** 2) for result in (guided, plain)]
    assert errors[0] < errors[1]
