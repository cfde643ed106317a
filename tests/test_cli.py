"""The command line, run as a real subprocess: output formats, exit codes, no tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import DATA, run_cli
from PIL import Image


def test_schedule_prints_one_value_per_line():
    result = run_cli("schedule", "0:(-2), 100:(4)", "--frames", "101")
    lines = result.stdout.split()
    assert result.returncode == 0 and len(lines) == 101
    assert float(lines[50]) == 1.0 and float(lines[100]) == 4.0


def test_schedule_json_and_hold():
    result = run_cli("schedule", "0:(t*2), 5:(1), 7:(t)", "--frames", "10", "--blend", "hold", "--json")
    assert json.loads(result.stdout) == [0, 2, 4, 6, 8, 1, 4, 7, 8, 9]


def test_schedule_plot_writes_a_png(tmp_path: Path):
    out = tmp_path / "curve.png"
    result = run_cli("schedule", "0:(sin(t)), 100:(4)", "--plot", str(out))
    assert result.returncode == 0, result.stderr
    with Image.open(out) as image:
        assert image.size[0] > 500 and image.size[1] > 150
        colors = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colors) > 20  # a drawn curve, not a blank canvas


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["schedule", "0:(sin(t), 30:(1)"], "unclosed '('"),
        (["schedule", "0:(__import__('os').system('true'))"], "only plain function calls"),
        (["schedule", "0:(t)", "--frames", "0"], "not a frame count"),
        (["prompts", "demo", "--set", "zom=1"], "unknown setting 'zom'"),
        (["prompts", "demo", "--frame", "9999"], "outside the animation"),
        (["inspect", "no-such-preset"], "does not exist"),
        (["prompts", "demo", "--set", "prompts.0=a (fox"], "unclosed '('"),
        (["import", str(DATA / "deforum_hold_cases.json")], "does not look like Deforum"),
        (["settings", "nope"], "unknown section"),
    ],
)
def test_user_errors_exit_2_with_a_message_and_no_traceback(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_schedule_error_shows_a_caret_under_the_column():
    result = run_cli("schedule", "0:(1), 30:(1+tt)")
    lines = result.stderr.splitlines()
    assert lines[0] == "error: schedule, keyframe 30, column 14: unknown variable 'tt'"
    assert lines[2].index("^") == lines[1].index("0:(1)") + 13


def test_prompts_json_for_a_frame():
    result = run_cli("prompts", "demo", "--frame", "20", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert set(payload) == {"positive", "negative"}
    assert [w for _, w in payload["positive"]] == [0.5, 0.5]  # blending over prompt_blend_frames = 8
    assert payload["negative"] == [["blurry, lowres, text, watermark", 1.0]]


def test_prompts_human_output_shows_emphasis():
    result = run_cli("prompts", "demo", "--set", "prompts.0=a ((red)) fox", "--frame", "0")
    assert "a ((red)) fox" in result.stdout and "'red'×1.21" in result.stdout


def test_import_writes_a_preset_that_renders_the_same(tmp_path: Path):
    out = tmp_path / "imported.toml"
    result = run_cli("import", str(DATA / "deforum_a1111_settings.txt"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "warning: switched on in the file but not supported here" in result.stderr
    assert out.read_text().startswith("# Imported from deforum_a1111_settings.txt (Deforum A1111 extension)")
    again = run_cli("import", str(DATA / "deforum_a1111_settings.txt"), "-o", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr
    inspect = run_cli("inspect", str(out))
    assert inspect.returncode == 0, inspect.stderr
    assert "96 frames at 24 fps" in inspect.stdout


def test_inspect_demo_plots(tmp_path: Path):
    out = tmp_path / "plan.png"
    result = run_cli("inspect", "demo", "--plot", str(out))
    assert result.returncode == 0, result.stderr
    assert "72 frames at 12 fps" in result.stdout
    assert "no audio is loaded" in result.stderr
    assert out.stat().st_size > 10_000


def test_settings_lists_every_section():
    result = run_cli("settings")
    assert "[motion]" in result.stdout and "zoom = " in result.stdout and "strength_schedule" in result.stdout


def test_no_arguments_prints_help():
    result = run_cli()
    assert result.returncode == 0 and "schedule" in result.stdout and "import" in result.stdout
