"""Bad expressions give our message only: Python's own parser warnings never reach the user."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import ROOT

from engine.errors import ScheduleError
from engine.schedule import Timeline, compile_schedule


def run_main(*args: str) -> subprocess.CompletedProcess:
    """``python -W default main.py ...``: every warning Python would print is shown."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONWARNINGS"}
    return subprocess.run(
        [sys.executable, "-W", "default", str(ROOT / "main.py"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )


def assert_only_our_message(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Warning" not in result.stderr, result.stderr
    assert "<unknown>" not in result.stderr and "Traceback" not in result.stderr


def test_inspect_of_a_preset_with_a_bad_literal_prints_only_our_message(tmp_path: Path):
    preset = tmp_path / "bad.toml"
    preset.write_text('[motion]\nzoom = "0:(1if)"\n')
    result = run_main("inspect", str(preset))
    assert_only_our_message(result, "motion.zoom, keyframe 0, column 4: cannot read this expression")


def test_schedule_command_with_a_bad_escape_prints_only_our_message():
    result = run_main("schedule", '0:(1 + "\\q")')
    assert_only_our_message(result, "error: schedule, keyframe 0, column 8: '\\\\q' is not a number")


# the brief's cases, then ones where Python warns before failing, and a string that reaches the parser
MALFORMED = ["1if", "1e", "0x", "1_", "is 3", '"\\q"', "0x1for", "1if t", "1or", '1 + "\\q"', "t * '\\d'"]


@pytest.mark.parametrize("expression", MALFORMED)
def test_malformed_expressions_raise_our_error_and_warn_nothing(expression: str):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ScheduleError) as raised:
            compile_schedule(f"0:({expression})", Timeline(10))
    assert [str(w.message) for w in caught] == []
    assert raised.value.offset is not None and raised.value.hint


@pytest.mark.parametrize(
    ("expression", "value"), [("1if t > 3 else 2", [2, 2, 2, 2, 1]), ("t > 2or t < 1", [1, 0, 0, 1, 1])]
)
def test_python_accepts_these_with_a_warning_and_so_do_we_without_one(expression: str, value: list[float]):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        curve = compile_schedule(f"0:({expression})", Timeline(5)).evaluate()
    assert [str(w.message) for w in caught] == []
    assert curve.tolist() == value


def test_the_warning_filters_are_restored():
    before = list(warnings.filters)
    with pytest.raises(ScheduleError):
        compile_schedule("0:(1if)", Timeline(3))
    assert warnings.filters == before
