"""Settings: defaults, validation messages, TOML presets with comments, --set overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomlkit

from engine.errors import ErrorGroup, SettingsError, collecting_notices
from engine.presets import apply_override, load_preset, save_preset, settings_from_data, to_document
from engine.settings import FIELDS, GROUPS, Settings, fields_of_kind


def test_defaults_are_deforums():
    s = Settings()
    assert (s.image.W, s.image.H, s.sampling.steps) == (512, 512, 25)
    assert s.sampling.scale == "0:(7)"
    assert s.motion.strength_schedule == "0:(0.65)"
    assert s.motion.noise_schedule == "0:(0.065)"
    assert s.motion.translation_z == "0:(1.75)"
    assert s.depth.fov_schedule == "0:(70)" and s.depth.near_schedule == "0:(200)"
    assert s.depth.far_schedule == "0:(10000)" and s.depth.midas_weight == 0.2
    assert s.coherence.diffusion_cadence == 2 and s.coherence.color_coherence == "LAB"
    assert s.animation.fps == 15 and s.animation.max_frames == 120
    assert s.sampling.seed == -1 and s.batch.seed_behavior == "iter"


def test_every_setting_the_seeds_list_exists():
    seeds = """
    animation_mode max_frames border angle zoom translation_x translation_y translation_z rotation_3d_x
    rotation_3d_y rotation_3d_z enable_perspective_flip perspective_flip_theta perspective_flip_phi
    perspective_flip_gamma perspective_flip_fv noise_schedule strength_schedule contrast_schedule
    enable_sampler_scheduling sampler_schedule kernel_schedule sigma_schedule amount_schedule
    threshold_schedule color_coherence color_coherence_video_every_N_frames color_force_grayscale
    diffusion_cadence use_depth_warping midas_weight fov_schedule near_schedule far_schedule padding_mode
    sampling_mode save_depth_maps video_init_path extract_nth_frame overwrite_extracted_frames use_mask_video
    video_mask_path hybrid_generate_inputframes hybrid_use_first_frame_as_init_image hybrid_motion
    hybrid_motion_use_prev_img hybrid_flow_method hybrid_composite hybrid_comp_mask_type
    hybrid_comp_mask_inverse hybrid_comp_mask_equalize hybrid_comp_mask_auto_contrast
    hybrid_comp_save_extra_frames hybrid_use_video_as_mse_image interpolate_key_frames interpolate_x_frames
    resume_from_timestring resume_timestring W H bit_depth_output seed sampler steps scale ddim_eta
    dynamic_threshold static_threshold save_samples save_settings display_samples save_sample_per_step
    show_sample_per_step n_batch n_samples batch_name filename_format seed_behavior seed_iter_N make_grid
    grid_rows outdir use_init strength init_image add_init_noise init_noise use_mask use_alpha_as_mask
    mask_file invert_mask mask_brightness_adjust mask_contrast_adjust overlay_mask mask_overlay_blur mean_scale
    var_scale exposure_scale exposure_target colormatch_scale colormatch_image colormatch_n_colors
    ignore_sat_weight clip_name clip_scale aesthetics_scale cutn cut_pow init_mse_scale init_mse_image
    blue_scale gradient_wrt gradient_add_to decode_method grad_threshold_type clamp_grad_threshold clamp_start
    clamp_stop grad_inject_timing cond_uncond_sync scene_prefix scene_suffix still_prompts negative_prompt
    make_gif skip_video_creation max_video_frames file offset filters fps
    """.split()
    missing = [name for name in seeds if name not in FIELDS]
    assert missing == []


def test_every_field_has_help_text():
    undocumented = [f"{g}.{n}" for g, m in GROUPS.items() for n, f in m.model_fields.items() if not f.description]
    assert undocumented == []


def test_sizes_round_down_to_8_as_deforum_with_a_notice():
    with collecting_notices() as notices:
        s = settings_from_data({"image": {"W": 700, "H": 129}})
    assert (s.image.W, s.image.H) == (696, 128)
    assert (settings_from_data({"image": {"W": 720, "H": 1280}}).image.W) == 720  # common in users' files
    assert notices == [
        "image.W 700 is not a multiple of 8: using 696",
        "image.H 129 is not a multiple of 8: using 128",
    ]


def test_choices_are_case_insensitive_and_old_deforum_spellings_work():
    s = settings_from_data(
        {
            "animation": {"animation_mode": "3d"},
            "coherence": {"color_coherence": "Match Frame 0 HSV"},
            "sampling": {"sampler": "DPM++ 2M Karras"},
        }
    )
    assert (s.animation.animation_mode, s.coherence.color_coherence, s.sampling.sampler) == (
        "3D",
        "HSV",
        "dpmpp_2m_karras",
    )


def test_flat_keys_go_to_their_group():
    s = settings_from_data({"zoom": "0:(1.1)", "max_frames": 10, "prompts": {"0": "x"}})
    assert s.motion.zoom == "0:(1.1)" and s.animation.max_frames == 10


def test_schedules_accept_bare_numbers():
    assert settings_from_data({"motion": {"zoom": 1.02}}).motion.zoom == "1.02"


@pytest.mark.parametrize(
    ("data", "field", "message", "hint"),
    [
        ({"motion": {"zom": "1"}}, "motion.zom", "unknown setting 'zom' in [motion]", "did you mean zoom"),
        ({"image": {"zoom": "1"}}, "image.zoom", "unknown setting 'zoom' in [image]", "zoom belongs in [motion]"),
        ({"mystery": {"a": 1}}, "mystery", "unknown section [mystery]", None),
        ({"image": {"W": "wide"}}, "image.W", "valid integer", "W takes a whole number"),
        ({"animation": {"animation_mode": "4D"}}, "animation.animation_mode", "Input should be", "one of 'None'"),
        ({"sampling": {"sampler": "warp drive"}}, "sampling.sampler", "unknown sampler 'warp drive'", None),
        ({"animation": {"max_frames": 0}}, "animation.max_frames", "greater than or equal to 1", None),
        (
            {"audio": {"filters": [{"name": "t", "f_center": 100, "f_width": 10}]}},
            "audio.filters.0.name",
            "already a built-in name",
            None,
        ),
        (
            {
                "audio": {
                    "filters": [
                        {"name": "fLo", "f_center": 100, "f_width": 10},
                        {"name": "fLo", "f_center": 900, "f_width": 10},
                    ]
                }
            },
            "audio.filters",
            "two filters are named 'fLo'",
            None,
        ),
        ({"motion": {"zoom": True}}, "motion.zoom", "valid string", "a number or a schedule"),
    ],
)
def test_settings_errors_name_the_field_and_the_fix(data, field, message, hint):
    with pytest.raises(SettingsError) as caught:
        settings_from_data(data)
    error = caught.value
    assert error.field == field
    assert message in error.message
    if hint:
        assert hint in error.hint


def test_several_errors_are_reported_together():
    with pytest.raises(ErrorGroup) as caught:
        settings_from_data({"image": {"W": "x", "H": "y"}})
    assert [e.field for e in caught.value.errors] == ["image.W", "image.H"]


# -- --set overrides ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("assignment", "path", "expected"),
    [
        ("max_frames=60", ("animation", "max_frames"), 60),
        ("image.W=640", ("image", "W"), 640),
        ("zoom=0:(1.02 + 0.01*sin(t))", ("motion", "zoom"), "0:(1.02 + 0.01*sin(t))"),
        ("batch_name=123", ("batch", "batch_name"), "123"),
        ("use_init=true", ("init", "use_init"), True),
        ("backend=preview", ("model", "backend"), "preview"),
        ("fps=29.97", ("animation", "fps"), 29.97),
        ("bit_depth_output=16", ("image", "bit_depth_output"), 16),
    ],
)
def test_set_overrides_any_field(assignment, path, expected):
    data: dict = {}
    apply_override(data, assignment)
    settings = settings_from_data(data)
    assert getattr(getattr(settings, path[0]), path[1]) == expected


def test_set_prompts_and_filters():
    data: dict = {}
    apply_override(data, "prompts.30=a cat, (sleeping:1.2)")
    apply_override(data, 'audio.filters=[{name="fLo", f_center=105, f_width=65}]')
    settings = settings_from_data(data)
    assert settings.prompts["30"] == "a cat, (sleeping:1.2)"
    assert settings.audio.filters[0].name == "fLo" and settings.audio.filters[0].order == 5


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("zom=1", "unknown setting 'zom'"),
        ("motion.bogus=1", "unknown setting 'motion.bogus'"),
        ("max_frames", "no '='"),
    ],
)
def test_bad_overrides(assignment, message):
    with pytest.raises(SettingsError, match=message):
        apply_override({}, assignment)


# -- presets ------------------------------------------------------------------------------------------

PRESET = """\
# My preset: keep this comment
[animation]
max_frames = 30  # short test

[motion]
# the push-in
zoom = "0:(1.04)"

[prompts]
0 = "a red fox"
"""


def test_preset_load_edit_save_keeps_comments(tmp_path: Path):
    path = tmp_path / "fox.toml"
    path.write_text(PRESET)
    preset = load_preset(path)
    edited = preset.settings.model_copy(deep=True)
    edited.motion.zoom = "0:(1.05)"
    edited.prompts = {"0": "a red fox", "15": "a grey wolf"}
    save_preset(edited, path, base=preset.document, original=preset.settings)
    text = path.read_text()
    assert "# My preset: keep this comment" in text and "# short test" in text and "# the push-in" in text
    assert 'zoom = "0:(1.05)"' in text
    assert load_preset(path).settings == edited


def test_new_preset_holds_only_what_differs_from_the_defaults(tmp_path: Path):
    settings = settings_from_data({"animation": {"max_frames": 10}, "prompts": {"0": "x"}})
    document = to_document(settings, header="hello")
    text = tomlkit.dumps(document)
    assert text.startswith("# hello")
    assert "max_frames = 10" in text and "zoom" not in text
    path = tmp_path / "p.toml"
    save_preset(settings, path)
    assert load_preset(path).settings == settings


def test_full_document_round_trips_every_field(tmp_path: Path):
    settings = settings_from_data({"audio": {"filters": [{"name": "fLo", "f_center": 105, "f_width": 65}]}})
    path = tmp_path / "full.toml"
    save_preset(settings, path, full=True)
    assert load_preset(path).settings == settings
    assert len(fields_of_kind("schedule")) > 40


def test_overrides_apply_on_load(tmp_path: Path):
    path = tmp_path / "fox.toml"
    path.write_text(PRESET)
    assert load_preset(path, ["max_frames=12"]).settings.animation.max_frames == 12


def test_relative_paths_resolve_beside_the_preset(tmp_path: Path):
    (tmp_path / "track.wav").write_bytes(b"RIFF")
    path = tmp_path / "p.toml"
    path.write_text('[audio]\nfile = "track.wav"\n[init]\ninit_image = "missing.png"\n')
    settings = load_preset(path).settings
    assert settings.audio.file == str((tmp_path / "track.wav").resolve())
    assert settings.init.init_image == "missing.png"


def test_invalid_toml_points_at_the_line(tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text('[motion]\nzoom = "0:(1.04)\n')
    with pytest.raises(SettingsError) as caught:
        load_preset(path)
    assert "not valid TOML" in caught.value.message
    assert caught.value.line_and_column[0] == 2


def test_missing_preset_lists_the_shipped_ones(tmp_path: Path):
    with pytest.raises(SettingsError) as caught:
        load_preset(tmp_path / "nope.toml")
    assert "demo.toml" in caught.value.hint
