"""Real users' files: the A1111 prompt syntax, partial and odd settings files, Parseq documents,
and the corpus of published Deforum settings and Parseq documents in tests/data/corpus."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from engine.deforum import import_deforum, import_deforum_data
from engine.errors import SettingsError, collecting_notices
from engine.parseq import DELTA_FIELDS, schedule_text
from engine.plan import compile_plan, compile_run
from engine.prompts import PromptOptions, compile_prompts
from engine.schedule import Timeline, compile_schedule

DATA = Path(__file__).parent / "data"
CORPUS = DATA / "corpus"
SOURCES = json.loads((CORPUS / "SOURCES.json").read_text()) if (CORPUS / "SOURCES.json").exists() else []
PARSEQ = CORPUS / "deforum-art__sd-webui-deforum__parseq.json"


def a1111(text: str, frame: int = 0):
    prompts = compile_prompts({"0": text}, Timeline(10), options=PromptOptions(syntax="a1111"), blend="hold")
    return prompts.at(frame)


# -- A1111 prompt syntax ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "plain", "loras"),
    [
        ("...in focus<lora:dark_magician_girl_offset:0.65>", "...in focus", [["dark_magician_girl_offset", 0.65]]),
        ("<lora:[LoRA][Horror]s4w3d0ffBlend_v10:0.8> a house", "a house", [["[LoRA][Horror]s4w3d0ffBlend_v10", 0.8]]),
        ("<lora:Colored_Icons:0.6> coloredic0n space pirate", "coloredic0n space pirate", [["Colored_Icons", 0.6]]),
        ("a cat <lyco:add detail v1.5:0.4:0.2>", "a cat", [["add detail v1.5", 0.4]]),
        ("a cat <lora:plain>", "a cat", [["plain", 1.0]]),
    ],
)
def test_lora_tags_leave_the_text_and_carry_their_weight(text, plain, loras):
    frame = a1111(text)
    assert [sub.plain.strip() for sub, _ in frame.positive] == [plain]
    assert frame.as_json()["loras"] == loras


def test_colons_bars_and_stray_brackets_are_text_in_a1111_syntax():
    with collecting_notices() as notices:
        frame = a1111("style: noir | moody, 8k, trending on pixiv)")
    assert [sub.plain for sub, _ in frame.positive] == ["style: noir | moody, 8k, trending on pixiv)"]
    assert len(notices) == 1 and "column 43" in notices[0] and "^" in notices[0]
    emphasis = dict(a1111("a (red:1.3) fox, \\(escaped\\)").emphasis(a1111("a (red:1.3) fox").positive[0][0]))
    assert emphasis["red"] == pytest.approx(1.3)


def test_and_weights_breaks_and_prompt_editing():
    frame = a1111("a forest :0.7 AND a city BREAK at night :0.3 --neg blurry")
    assert [round(w, 6) for _, w in frame.positive] == [0.7, 0.3]
    city = frame.positive[1][0]
    assert [(c.text, c.is_break) for c in city.chunks] == [("a city", False), ("BREAK", True), ("at night", False)]
    assert [sub.plain for sub, _ in frame.negative] == ["blurry"]
    with collecting_notices() as notices:
        edited = a1111("a [cat:dog:0.25] on a [red|blue] sofa")
    texts = [(end, part.positive[0][0].plain) for end, part in edited.by_step(4)]
    assert texts == [(1, "a cat on a red sofa"), (2, "a dog on a blue sofa"), (3, "a dog on a red sofa"),
                     (4, "a dog on a blue sofa")]  # fmt: skip
    assert notices == []  # switched per step, as in A1111: nothing to say


def test_lora_weight_may_be_a_schedule_expression():
    prompts = compile_prompts(
        {"0": "a cat <lora:glow:`t/10`>"}, Timeline(10), options=PromptOptions(syntax="a1111"), blend="hold"
    )
    assert prompts.at(0).loras == [] and prompts.at(5).loras == [("glow", 0.5)]


def test_driftwave_syntax_keeps_pytti_weights_and_still_reads_lora_tags():
    prompts = compile_prompts({"0": "flowers: 2 | stone: 1 <lora:moss:0.5>"}, Timeline(1))
    frame = prompts.at(0)
    assert [(sub.plain, w) for sub, w in frame.positive] == [("flowers", 2.0), ("stone", 1.0)]
    assert frame.loras == [("moss", 0.5)]


# -- settings files as users have them -------------------------------------------------------------------


def test_the_issue_examples_import_and_pass_inspect(tmp_path: Path):
    source = {
        "steps": 30,
        "strength_schedule": "0: (0.65)",
        "cfg_scale_schedule": "0: (7)",
        "translation_x": "0: 0: ((0.11 * cos((120/ 240 * 3.141 * (t + 0) / 24))**1 + 0)*(1))",
        "hybrid_motion": "None",
        "cn_1_enabled": False,
        "add_soundtrack": "File",
        "soundtrack_path": "extensions/deforum_music/example.mp3",
        "prompts": {"0": "in focus<lora:dark_magician_girl_offset:0.65>, 8k, trending on pixiv)"},
    }
    path = tmp_path / "partial.json"
    path.write_text(json.dumps(source))
    out = tmp_path / "partial.toml"
    imported = run_cli("import", str(path), "-o", str(out))
    assert imported.returncode == 0, imported.stderr
    assert "9 Deforum keys read" in imported.stdout
    assert "Deforum reads nothing after the second ':'" in imported.stderr and "used 0" in imported.stderr
    assert "'extensions/deforum_music/example.mp3' does not exist on this machine" in imported.stderr
    assert "# as Deforum read it" in out.read_text()
    inspect = run_cli("inspect", str(out))
    assert inspect.returncode == 0, inspect.stderr
    prompts = json.loads(run_cli("prompts", str(out), "--json").stdout)
    assert prompts["loras"] == [["dark_magician_girl_offset", 0.65]]
    values = json.loads(run_cli("values", str(out), "--json", "--frames", "0:5").stdout)
    assert values["motion.translation_x"] == [0.0] * 5  # what Deforum rendered
    assert values["motion.strength_schedule"] == [0.65] * 5


@pytest.mark.parametrize(
    ("content", "message", "hint"),
    [
        ("('a', {\"W\": 512})", "line 1, column 1", "Python tuple"),
        ('{"W": 512, // my note\n "H": 512}', "line 1, column 12", "no comments"),
        ("{'W': 512}", "line 1, column 2", "double quotes"),
        ('{"hello": 1}', "none of Deforum's keys", None),
    ],
)
def test_files_that_are_not_settings_say_where_and_what_to_fix(tmp_path: Path, content, message, hint):
    path = tmp_path / "x.txt"
    path.write_text(content)
    with pytest.raises(SettingsError, match=message) as caught:
        import_deforum(path)
    assert hint is None or hint in (caught.value.hint or "")


def test_settings_without_effect_are_listed_as_not_supported():
    result = import_deforum_data({"W": 512, "save_samples": False, "display_samples": False})
    assert "save.save_samples" not in result.mapped
    assert any("save_samples" in warning and "display_samples" in warning for warning in result.warnings)
    listing = run_cli("settings", "save")
    assert "save_samples = true" in listing.stdout and "no effect here" in listing.stdout


def test_a_missing_track_is_an_error_only_when_a_schedule_reads_it(tmp_path: Path):
    settings = import_deforum_data({"max_frames": 4, "add_soundtrack": "File", "soundtrack_path": "gone.mp3"}).settings
    with collecting_notices() as notices:
        assert compile_run(settings).timeline.frames == 4
    assert any("gone.mp3 does not exist" in notice for notice in notices)
    reading = settings.model_copy(update={"motion": settings.motion.model_copy(update={"zoom": "0:(1+amp)"})})
    with pytest.raises(SettingsError, match="schedules read amp"):
        compile_run(reading)


# -- Parseq --------------------------------------------------------------------------------------------------


def parseq_document(frames: int = 24) -> dict:
    """A document shaped as Parseq writes one: absolute values, deltas, percentages, prompts."""
    rendered = []
    for frame in range(frames):
        zoom, angle = 1 + 0.01 * np.sin(frame / 3), 5 * np.cos(frame / 4)
        rendered.append(
            {
                "frame": frame,
                "zoom": zoom,
                "angle": angle,
                "strength": 0.5 + 0.01 * frame,
                "seed": 1000.5 + frame,
                "subseed": 1001 + frame,
                "subseed_strength": 0.5,
                "deforum_prompt": "a lake --neg fog" if frame < 12 else "a city :0.7 AND a lake :0.3 --neg fog",
            }
        )
    for index, entry in enumerate(rendered):
        before = rendered[index - 1] if index else None
        entry["zoom_delta"] = entry["zoom"] if before is None else 1 + entry["zoom"] - before["zoom"]
        entry["angle_delta"] = entry["angle"] if before is None else entry["angle"] - before["angle"]
        entry["strength_delta"] = 0.01
    return {
        "meta": {"generated_by": "sd_parseq", "version": "0.1.94"},
        "options": {"output_fps": 24, "cadence": 2},
        "rendered_frames": rendered,
    }


def check_parseq_values(settings, document, use_deltas=True):
    with collecting_notices():
        values = compile_plan(settings).values
    frames = document["rendered_frames"]
    assert settings.animation.max_frames == len(frames)
    for field, path in (("zoom", "motion.zoom"), ("angle", "motion.angle"), ("strength", "motion.strength_schedule")):
        key = f"{field}_delta" if use_deltas and field in DELTA_FIELDS else field
        np.testing.assert_allclose(values[path], [f[key] for f in frames], atol=1e-6, rtol=0)
    np.testing.assert_allclose(values["batch.seed_schedule"], [int(f["seed"]) for f in frames], atol=0)
    np.testing.assert_allclose(values["sampling.subseed_schedule"], [f["subseed"] for f in frames], atol=0)


def test_a_standalone_parseq_document_renders_its_frames(tmp_path: Path):
    document = parseq_document()
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(document))
    result = import_deforum(path)
    settings = result.settings
    assert result.kind == "Parseq"
    assert (settings.animation.fps, settings.coherence.diffusion_cadence) == (24, 2)
    assert settings.batch.seed_behavior == "schedule" and settings.sampling.enable_subseed_scheduling
    check_parseq_values(settings, document)
    assert settings.prompts == {"0": "a lake --neg fog", "12": "a city :0.7 AND a lake :0.3 --neg fog"}
    with collecting_notices():
        later = compile_plan(settings).prompts.at(12)
    assert [(s.plain, round(w, 6)) for s, w in later.positive] == [("a city", 0.7), ("a lake", 0.3)]
    out = tmp_path / "doc.toml"
    assert run_cli("import", str(path), "-o", str(out)).returncode == 0
    assert "Parseq (sd_parseq 0.1.94, 24 rendered frames)" in out.read_text()
    shown = json.loads(run_cli("values", str(out), "--json").stdout)
    np.testing.assert_allclose(shown["motion.zoom"], [f["zoom_delta"] for f in document["rendered_frames"]], atol=1e-6)


def test_an_inline_manifest_over_a_settings_file_keeps_what_parseq_does_not_manage():
    document = parseq_document(16)
    data = {
        "max_frames": 300,
        "fps": 12,
        "translation_x": "0:(3)",
        "prompts": {"0": "ignored, Parseq manages the prompts"},
        "parseq_manifest": json.dumps(document),
        "parseq_use_deltas": False,
        "parseq_non_schedule_overrides": True,
    }
    settings = import_deforum_data(data).settings
    check_parseq_values(settings, document, use_deltas=False)
    assert settings.motion.translation_x == "0:(3)" and settings.animation.fps == 24
    kept = import_deforum_data({**data, "parseq_non_schedule_overrides": False, "max_frames": 10}).settings
    assert kept.animation.max_frames == 10 and kept.animation.fps == 12


def test_a_manifest_url_without_network_says_to_download_it():
    with pytest.raises(SettingsError, match="cannot be fetched") as caught:
        import_deforum_data({"parseq_manifest": "https://sd-parseq.web.app/api/doc.json"})
    assert "main.py import doc.json" in caught.value.hint


def test_per_frame_values_become_exact_compact_schedules():
    values = [0.0, 1.0, 2.0, 3.0, 2.5, 1e-05, 1e-05, 7.25]
    text = schedule_text(values)
    assert "e-" not in text and text.count(":") == 6  # the straight run 0..3 keeps its ends only
    compiled = compile_schedule(text, Timeline(len(values)), blend="hold").evaluate({})
    np.testing.assert_allclose(compiled, values, atol=1e-12, rtol=0)


# -- the corpus --------------------------------------------------------------------------------------------


def test_the_corpus_holds_enough_real_files():
    assert len(SOURCES) >= 30 and len({entry["repo"].split("/")[0] for entry in SOURCES}) >= 15
    for entry in SOURCES:
        assert (CORPUS / entry["file"]).is_file() and entry["repo"] and entry["path"]


@pytest.mark.parametrize("entry", SOURCES, ids=[entry["file"] for entry in SOURCES])
def test_every_corpus_file_imports_and_validates(entry):
    path = CORPUS / entry["file"]
    try:
        result = import_deforum(path)
    except SettingsError as error:  # only files that are not JSON settings may be refused, and say where
        refusals = ("invalid JSON", "none of Deforum's keys", "cannot be fetched here")  # a Parseq URL, offline
        assert any(refusal in error.message for refusal in refusals), error.message
        return
    with collecting_notices():
        plan = compile_run(result.settings)
    assert plan.timeline.frames == result.settings.animation.max_frames
    assert plan.prompts is not None and plan.prompts.keys


def test_parseq_fixture_of_deforum_matches_its_rendered_frames():
    document = json.loads(PARSEQ.read_text())
    settings = import_deforum(PARSEQ).settings
    with collecting_notices():
        values = compile_plan(settings).values
    frames = document["rendered_frames"]
    np.testing.assert_allclose(values["motion.angle"], [f["angle_delta"] for f in frames], atol=1e-6, rtol=0)
    np.testing.assert_allclose(values["batch.seed_schedule"], [int(f["seed"]) for f in frames], atol=0)
