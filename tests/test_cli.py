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
    assert set(payload) == {"positive", "negative", "loras"} and payload["loras"] == []
    assert [w for _, w in payload["positive"]] == [0.5, 0.5]  # blending over prompt_blend_frames = 8
    assert payload["negative"] == [["blurry, lowres, text, watermark", 1.0]]


def test_prompts_human_output_shows_emphasis():
    result = run_cli("prompts", "demo", "--set", "prompts.0=a ((red)) fox", "--frame", "0")
    assert "a ((red)) fox" in result.stdout and "'red'×1.21" in result.stdout


def test_import_writes_a_preset_that_renders_the_same(tmp_path: Path):
    out = tmp_path / "imported.toml"
    result = run_cli("import", str(DATA / "deforum_a1111_settings.txt"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_text().startswith("# Imported from deforum_a1111_settings.txt (Deforum A1111 extension)")
    assert out.read_text().count("[[controlnet]]") == 2  # its two enabled units
    again = run_cli("import", str(DATA / "deforum_a1111_settings.txt"), "-o", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr
    assert "audio.file: 'track.mp3' does not exist on this machine" in result.stderr
    inspect = run_cli("inspect", str(out))  # the file's soundtrack was track.mp3, which is not here
    assert inspect.returncode == 0, inspect.stderr
    assert "96 frames at 24 fps" in inspect.stdout
    assert "track.mp3 does not exist; no schedule reads it, so the video is made without sound" in inspect.stderr
    reading = run_cli("inspect", str(out), "--set", "zoom=0:(1+0.1*amp)")  # now a schedule needs the track
    assert reading.returncode == 2 and "audio.file" in reading.stderr and "the schedules read amp" in reading.stderr


def test_inspect_demo_plots(tmp_path: Path):
    out = tmp_path / "plan.png"
    result = run_cli("inspect", "demo", "--plot", str(out))
    assert result.returncode == 0, result.stderr
    assert "72 frames at 12 fps" in result.stdout
    assert "motion.zoom" in result.stdout and "motion.strength_schedule" in result.stdout  # they follow the track
    assert "no audio is loaded" not in result.stderr
    assert out.stat().st_size > 10_000


def test_settings_lists_every_section():
    result = run_cli("settings")
    assert "[motion]" in result.stdout and "zoom = " in result.stdout and "strength_schedule" in result.stdout


def test_no_arguments_opens_the_tui_which_needs_a_terminal():
    result = run_cli()
    assert result.returncode == 2 and "the TUI needs a terminal" in result.stderr and "--help" in result.stderr
    help_text = run_cli("--help").stdout
    assert "tui" in help_text and "schedule" in help_text and "import" in help_text


# -- render ---------------------------------------------------------------------------------------------

SMALL = ["--set", "W=64", "--set", "H=64", "--set", "max_frames=8"]


def test_render_with_preview_writes_frames_and_video(tmp_path: Path):
    result = run_cli("render", "demo", "--set", "backend=preview", "--set", f"outdir={tmp_path}", *SMALL)
    assert result.returncode == 0, result.stderr
    assert "8 frames in" in result.stdout and "video:" in result.stdout
    assert "frame 8/8" in result.stderr and "it/s" in result.stderr


def test_render_falls_back_to_preview_when_asked_and_says_so(tmp_path: Path):
    result = run_cli("render", "demo", "--fallback-preview", "--set", f"outdir={tmp_path}", *SMALL)
    assert result.returncode == 0, result.stderr
    assert "stabilityai/sd-turbo is not downloaded" in result.stderr
    assert "rendering with the preview backend instead" in result.stderr
    settings_toml = next(tmp_path.glob("driftwave/*/settings.toml")).read_text()
    assert 'backend = "preview"' in settings_toml and "Rendered with: preview" in settings_toml


def test_render_without_model_access_is_one_clear_error(tmp_path: Path):
    result = run_cli("render", "demo", "--set", f"outdir={tmp_path}", *SMALL)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "huggingface.co cannot be reached" in result.stderr and "backend=preview" in result.stderr
    assert not tmp_path.joinpath("driftwave").exists()


def test_ctrl_c_keeps_frames_and_prints_the_resume_command(tmp_path: Path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    args = [
        "render",
        "demo",
        "--set",
        "backend=tiny",
        "--set",
        f"outdir={tmp_path}",
        "--set",
        "W=64",
        "--set",
        "H=64",
        "--set",
        "max_frames=60",
        "--set",
        "steps=8",
        "--set",
        "diffusion_cadence=1",
    ]
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 300  # a guard against a hang, not a speed test
    while not list(tmp_path.glob("driftwave/*/frames/000003.png")):
        assert process.poll() is None and time.monotonic() < deadline, "frame 3 never appeared"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Resume with:" in stderr and "Traceback" not in stderr
    folder = next(tmp_path.glob("driftwave/*"))
    done = sorted(folder.glob("frames/*.png"))
    assert 4 <= len(done) < 60 and not list(folder.glob("frames/.*"))  # no half-written frame
    timestring = stderr.split("--resume ")[1].split()[0]
    resumed = run_cli(*args, "--resume", timestring, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at frame" in resumed.stderr and "60 frames in" in resumed.stdout


# -- audio ----------------------------------------------------------------------------------------------

DEMO_TRACK = str(DATA.parent.parent / "presets" / "demo_track.flac")


def test_audio_analyze_prints_json_csv_and_plots(tmp_path: Path):
    result = run_cli(
        "audio", "analyze", DEMO_TRACK, "--filter", "fLo:105:65", "--filter", "fHi:900:600:4", "--fps", "12", "--json"
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert abs(payload["bpm"] - 120) < 1 and len(payload["values"]["fLo"]) == 96
    assert set(payload["values"]) == {"fLo", "fHi", "amp", "onset", "beat"}
    csv = run_cli("audio", "analyze", DEMO_TRACK, "--filter", "fLo:105:65", "--fps", "10", "--frames", "5", "--csv")
    assert csv.stdout.splitlines()[0] == "frame,seconds,fLo,amp,onset,beat" and len(csv.stdout.splitlines()) == 6
    plot = run_cli("audio", "analyze", DEMO_TRACK, "--fps", "12", "--plot", str(tmp_path / "a.png"))
    assert plot.returncode == 0 and (tmp_path / "a.png").stat().st_size > 10_000


def test_schedule_with_audio_variables():
    result = run_cli(
        "schedule",
        "0:(1 + 0.1*fLo)",
        "--frames",
        "24",
        "--fps",
        "12",
        "--audio",
        DEMO_TRACK,
        "--filter",
        "fLo:105:65",
        "--json",
    )
    values = json.loads(result.stdout)
    assert result.returncode == 0 and max(values) == pytest.approx(1.1, abs=1e-6) and min(values) < 1.03


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["audio", "analyze", "missing.wav"], "does not exist"),
        (["audio", "analyze", DEMO_TRACK, "--filter", "fLo:105"], "NAME:CENTER:WIDTH"),
        (["audio", "analyze", DEMO_TRACK, "--filter", "fLo:abc:65"], "are numbers"),
        (["audio", "analyze", DEMO_TRACK, "--filter", "t:100:50"], "built-in name"),
        (["audio", "analyze", DEMO_TRACK, "--filter", "fX:30000:50"], "outside 0-11025 Hz"),
        (["audio", "analyze", DEMO_TRACK, "--offset", "60"], "past the end"),
    ],
)
def test_audio_errors(args, message):
    result = run_cli(*args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_audio_devices_lists_or_explains():
    result = run_cli("audio", "devices")
    assert result.returncode == 0
    assert "no audio inputs found" in result.stdout or " ch, " in result.stdout
