"""Deforum's composable masks: mask_schedule, use_noise_mask / noise_mask_schedule, word masks.

On black-and-white masks the operators are checked against PIL's ``ImageChops``, the calls
Deforum's ``composable_masks.compose_mask`` makes; word masks against CLIPSeg run by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageChops

from engine import coherence
from engine.backends import load_backend
from engine.deforum import import_deforum_data
from engine.errors import DriftwaveError, collecting_notices
from engine.frame_step import FrameStep, load_init_and_mask
from engine.mask_syntax import Binary, Leaf, Not, parse_mask
from engine.masks import FrameMasks
from engine.plan import compile_plan
from engine.presets import settings_from_data
from engine.render import render
from engine.schedule import Timeline, compile_text_schedule
from engine.settings import ModelSettings

DATA = Path(__file__).parent / "data"
SIZE = 64


@pytest.fixture(scope="module")
def tiny():
    return load_backend(ModelSettings(backend="tiny"))


def make_settings(tmp_path: Path, **groups):
    data = {
        "animation": {"max_frames": 3},
        "image": {"W": SIZE, "H": SIZE},
        "sampling": {"seed": 5, "steps": 3, "scale": "2"},
        "coherence": {"diffusion_cadence": 1, "color_coherence": "None"},
        "batch": {"outdir": str(tmp_path / "out")},
        "prompts": {"0": "a red fox"},
        "model": {"backend": "tiny"},
    }
    for group, values in groups.items():
        data[group] = {**data.get(group, {}), **values}
    with collecting_notices():
        return settings_from_data(data)


def write_mask(path: Path, pixels: np.ndarray) -> str:
    cv2.imwrite(str(path), pixels)
    return str(path)


def halves(tmp_path: Path) -> tuple[str, str]:
    """Two black-and-white masks: the left half, and a square in the middle."""
    left = np.zeros((SIZE, SIZE), np.uint8)
    left[:, : SIZE // 2] = 255
    square = np.zeros((SIZE, SIZE), np.uint8)
    square[16:48, 16:48] = 255
    return write_mask(tmp_path / "left.png", left), write_mask(tmp_path / "square.png", square)


def masks_for(settings) -> FrameMasks:
    with collecting_notices():
        plan = compile_plan(settings)
    _, mask = load_init_and_mask(settings, "cpu")
    return FrameMasks(settings, plan.text_schedules, "cpu", mask)


def picture(seed: int = 0) -> torch.Tensor:
    return torch.rand((1, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(seed))


def as_pil(path: str) -> Image.Image:
    return Image.open(path).convert("L").convert("1")


def from_pil(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("L"), np.float32) / 255)[None, None]


# -- the expressions ---------------------------------------------------------------------------------


def test_operators_bind_in_deforums_order():
    tree = parse_mask("{init_mask} \\ {everywhere} ^ {video_mask} | !{human_mask} & [a.png]")
    init, everywhere, video = Leaf("var", "init_mask"), Leaf("var", "everywhere"), Leaf("var", "video_mask")
    right = Binary("|", video, Binary("&", Not(Leaf("var", "human_mask")), Leaf("file", "a.png")))
    assert tree == Binary("\\", init, Binary("^", everywhere, right))
    assert parse_mask("({init_mask} | {video_mask}) & <a red car>") == Binary(
        "&", Binary("|", init, video), Leaf("word", "a red car")
    )
    assert parse_mask("  ") == everywhere  # Deforum: an empty mask is the whole frame
    with pytest.raises(DriftwaveError, match="unclosed parenthesis at 1") as caught:
        parse_mask("!({init_mask} | {video_mask}", field="coherence.noise_mask_schedule")
    assert caught.value.field == "coherence.noise_mask_schedule"


def test_every_mask_schedule_in_the_users_files_parses():
    seen = set()
    for path in sorted((DATA / "corpus").iterdir()):
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        for key in ("mask_schedule", "noise_mask_schedule"):
            if isinstance(data, dict) and isinstance(data.get(key), str):
                for _, text in compile_text_schedule(data[key], Timeline(10), field=key).keys:
                    parse_mask(text, field=key)
                    seen.add(text)
    assert {"{video_mask}", "!({everywhere}^({init_mask}|{video_mask}) )"} <= seen


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{init_mask} & ", "a mask is missing at 13"),
        ("{init_mask} {video_mask}", "unexpected '{video_mask}' at 12"),
        ("{face_mask}", "unknown mask {face_mask}"),
        ("{init_mask} + {video_mask}", "unexpected '+' at 12"),
    ],
)
def test_a_bad_expression_stops_before_frame_0_naming_the_field(tmp_path, tiny, text, says):
    left, _ = halves(tmp_path)
    settings = make_settings(tmp_path, init={"use_mask": True, "mask_file": left, "mask_schedule": f'0: ("{text}")'})
    with pytest.raises(DriftwaveError) as caught:
        render(settings, backend=tiny)
    assert caught.value.field == "init.mask_schedule"
    assert says in str(caught.value)
    assert not (tmp_path / "out").exists()


# -- composing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "chops"),
    [
        ("&", ImageChops.logical_and),
        ("|", ImageChops.logical_or),
        ("^", ImageChops.logical_xor),
        ("\\", lambda a, b: ImageChops.logical_and(a, ImageChops.invert(b))),
    ],
)
def test_black_and_white_masks_combine_as_imagechops(tmp_path, operator, chops):
    left, square = halves(tmp_path)
    expression = f"[{left}] {operator} [{square}]"
    settings = make_settings(
        tmp_path, init={"use_mask": True, "mask_file": left, "mask_schedule": f'0: ("{expression}")'}
    )
    keep = masks_for(settings).keep(1, expression, picture())
    assert torch.equal(keep, from_pil(chops(as_pil(left), as_pil(square))))
    negated = masks_for(settings).keep(1, f"!({expression})", picture())
    assert torch.equal(negated, from_pil(ImageChops.invert(chops(as_pil(left), as_pil(square)))))


def test_the_first_frame_takes_the_mask_file_and_invert_mask_inverts_the_result(tmp_path):
    left, square = halves(tmp_path)
    init = {"use_mask": True, "mask_file": left, "mask_schedule": f'0: ("[{square}]")'}
    masks = masks_for(make_settings(tmp_path, init=init))
    assert torch.equal(masks.first(), from_pil(as_pil(left)))
    assert torch.equal(masks.keep(1, f"[{square}]", picture()), from_pil(as_pil(square)))
    inverted = masks_for(make_settings(tmp_path, init={**init, "invert_mask": True}))
    assert torch.equal(inverted.keep(1, f"[{square}]", picture()), 1 - from_pil(as_pil(square)))


def test_a_mask_that_comes_out_black_is_no_mask_and_a_missing_one_is_said(tmp_path):
    left, _ = halves(tmp_path)
    masks = masks_for(make_settings(tmp_path, init={"use_mask": True, "mask_file": left}))
    assert masks.keep(1, "{init_mask} & !{init_mask}", picture()) is None  # Deforum's check_mask_for_errors
    with collecting_notices() as notices:
        assert masks.keep(1, "{video_mask}", picture()) is None  # 2D: no mask video
        assert masks.keep(2, "{video_mask}", picture()) is None
    said = [str(notice) for notice in notices]
    assert said == [
        "init.mask_schedule: {video_mask} is black: no mask video (video_input.use_mask_video, in Video Input mode)"
    ]


def test_the_render_switches_masks_at_the_keyframes(tmp_path, tiny):
    left, square = halves(tmp_path)
    schedule = f'0: ("{{init_mask}}"), 2: ("[{square}] \\ {{init_mask}}")'
    settings = make_settings(tmp_path, init={"use_mask": True, "mask_file": left, "mask_schedule": schedule})
    requests = []
    generate = tiny.generate
    tiny.generate = lambda request: requests.append(request) or generate(request)
    try:
        render(settings, backend=tiny)
    finally:
        del tiny.generate
    left_mask, square_mask = from_pil(as_pil(left)), from_pil(as_pil(square))
    assert requests[0].mask is None  # frame 0 has no init to keep
    assert torch.equal(requests[1].mask, left_mask)
    assert torch.equal(requests[2].mask, torch.minimum(square_mask, 1 - left_mask))


# -- the grain's mask ---------------------------------------------------------------------------------


def test_masked_grain_blends_with_mid_gray_where_the_mask_is_black():
    image, mask = picture(1), torch.zeros((1, 1, SIZE, SIZE))
    mask[..., : SIZE // 2] = 1
    grained = coherence.add_noise(image, 0.4, 7, mask=mask)
    plain = coherence.add_noise(image, 0.4, 7)
    assert torch.equal(grained[..., : SIZE // 2], plain[..., : SIZE // 2])
    assert torch.allclose(grained[..., SIZE // 2 :], image[..., SIZE // 2 :] * 0.6 + 0.5 * 0.4, atol=1e-6)


def test_grain_goes_where_the_noise_mask_is_light_or_where_the_frame_is_diffused(tmp_path, tiny):
    left, square = halves(tmp_path)
    motion = {"noise_schedule": "0:(0.5)", "contrast_schedule": "0:(1)"}
    coherent = {"diffusion_cadence": 1, "color_coherence": "None"}
    cases = [
        ({"use_mask": True, "mask_file": left}, {}, 1 - from_pil(as_pil(left))),
        ({}, {"use_noise_mask": True, "noise_mask_schedule": f'0: ("[{square}]")'}, from_pil(as_pil(square))),
    ]
    for init, noise, where in cases:
        groups = {"motion": motion, "coherence": {**coherent, **noise}, "anti_blur": {"amount_schedule": "0:(0)"}}
        settings = make_settings(tmp_path, init=init, **groups)
        with collecting_notices():
            plan = compile_plan(settings)
        step = FrameStep(settings, tiny, masks=masks_for(settings))
        params = plan.frame(1)
        image = picture(2)
        expected = coherence.add_noise(image, 0.5, params.seed, mask=where)
        assert torch.equal(step.prepare_init(image, None, params), expected)


# -- word masks ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clipseg(tmp_path_factory) -> str:
    """A CLIPSeg with tiny random weights, saved as a user's download is."""
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor, ViTImageProcessor

    from engine.backends.tiny import tiny_tokenizer

    text = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2}
    text |= {"vocab_size": 1000, "max_position_embeddings": 77, "bos_token_id": 512, "eos_token_id": 513}
    vision = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 3}
    vision |= {"image_size": 64, "patch_size": 16}
    config = CLIPSegConfig(
        text_config={**text, "pad_token_id": 513},
        vision_config=vision,
        projection_dim=32,
        extract_layers=[1, 2],
        reduce_dim=16,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=37,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("clipseg")
    CLIPSegForImageSegmentation(config).eval().save_pretrained(folder)
    images = ViTImageProcessor(size={"height": 64, "width": 64}, image_mean=[0.48, 0.46, 0.41], image_std=[0.27] * 3)
    CLIPSegProcessor(image_processor=images, tokenizer=tiny_tokenizer()).save_pretrained(folder)
    return str(folder)


def clipseg_by_hand(folder: str, image: torch.Tensor, words: str) -> torch.Tensor:
    from transformers import AutoProcessor, CLIPSegForImageSegmentation

    processor = AutoProcessor.from_pretrained(folder)
    model = CLIPSegForImageSegmentation.from_pretrained(folder).eval()
    pixels = (image[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    inputs = processor(text=[words], images=[pixels], padding="max_length", return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits.reshape(1, 1, SIZE, SIZE)
    return torch.sigmoid(logits)


def test_words_and_people_are_found_by_clipseg(tmp_path, clipseg):
    left, _ = halves(tmp_path)
    init = {"use_mask": True, "mask_file": left, "word_mask_model": clipseg, "mask_schedule": '0: ("<a cat>")'}
    masks = masks_for(make_settings(tmp_path, init=init))
    image = picture(3)
    cat = masks.keep(1, "<a cat>", image)
    assert torch.allclose(cat, clipseg_by_hand(clipseg, image, "a cat"), atol=1e-6)
    assert torch.allclose(masks.keep(1, "{human_mask}", image), clipseg_by_hand(clipseg, image, "person"), atol=1e-6)
    assert 0 < float(cat.min()) < float(cat.max()) < 1  # soft, as the model says


def test_a_clipseg_model_that_cannot_be_found_stops_before_the_run(tmp_path, tiny):
    left, _ = halves(tmp_path)
    init = {"use_mask": True, "mask_file": left, "mask_schedule": '0: ("{human_mask}")'}
    init["word_mask_model"] = str(tmp_path / "no-such-model")
    with pytest.raises(DriftwaveError) as caught:
        render(make_settings(tmp_path, init=init), backend=tiny)
    assert caught.value.field == "init.word_mask_model"
    assert not (tmp_path / "out").exists()


# -- Deforum's files ---------------------------------------------------------------------------------


def test_deforums_mask_keys_import():
    data = json.loads((DATA / "deforum_a1111_settings.txt").read_text())
    data |= {"use_noise_mask": True, "noise_mask_schedule": '0: ("{video_mask} | {init_mask}")'}
    data |= {"mask_schedule": '0: ("!({everywhere}^({init_mask}|{video_mask}) ) ")'}
    imported = import_deforum_data(data)
    settings = imported.settings
    assert settings.coherence.use_noise_mask
    assert settings.coherence.noise_mask_schedule == '0: ("{video_mask} | {init_mask}")'
    assert settings.init.mask_schedule == '0: ("!({everywhere}^({init_mask}|{video_mask}) ) ")'
    assert not any("use_noise_mask" in warning for warning in imported.warnings)
