"""The schedule language: seed examples, grammar, tween and hold blends, errors, live path."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from engine.errors import ScheduleError, collecting_notices
from engine.schedule import Timeline, compile_schedule, compile_text_schedule


def values(text: str, frames: int = 120, blend: str = "tween", **timeline) -> np.ndarray:
    return compile_schedule(text, Timeline(frames, **timeline), blend=blend).evaluate()


# -- the seed's examples (000 "Parameters" and "MATH expressions") ------------------------------


def test_linear_tween_is_one_at_frame_50():
    curve = values("0:(-2), 100:(4)")
    assert curve[50] == 1.0
    assert curve[0] == -2.0 and curve[100] == 4.0
    assert np.allclose(np.diff(curve[:101]), 0.06)


def test_sine_swings_plus_minus_ten_with_period_ten():
    curve = values("0:(10*sin(2*3.14*t/10))", frames=200)
    assert np.abs(curve).max() <= 10
    assert curve.max() > 9.5 and curve.min() < -9.5  # sampled at whole frames
    assert np.allclose(curve[:190], curve[10:200], atol=0.05)  # period 10 (3.14 is not quite pi)
    assert not np.allclose(curve[:195], curve[5:200], atol=1.0)


def test_ripple_flattens_into_four():
    curve = values("0:(sin(t)), 100:(4)")
    t = np.arange(101)
    w = t / 100
    assert np.allclose(curve[:101], (1 - w) * np.sin(t) + w * 4)
    assert curve[0] == 0.0 and curve[100] == 4.0 and np.all(curve[100:] == 4.0)
    swing = lambda a, b: np.ptp(curve[a:b] - np.linspace(curve[a], curve[b - 1], b - a))  # noqa: E731
    assert swing(0, 20) > swing(40, 60) > swing(80, 100)  # the ripple shrinks


def test_strength_dips_every_25_frames():
    curve = values("0:(-0.35*(cos(3.141*t/25)**100)+0.8)")
    assert curve[25] == pytest.approx(0.45, abs=1e-3) and curve[50] == pytest.approx(0.45, abs=1e-3)
    assert curve[12] == pytest.approx(0.8, abs=1e-6)


def test_modulus_sawtooth():
    curve = values("0:(0.375*(t%5)+15)", frames=12)
    assert list(curve[:6]) == [15, 15.375, 15.75, 16.125, 16.5, 15]


# -- grammar --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "0:(where(t>5, 1, 0))",
        "0: (where(t > 5,\n        1, 0)),",
        " 0:( where(t>5,1,0) ) , ",
        "where(t>5, 1, 0)",
        "0: where(t>5, 1, 0)",
        "(t>5)*1",
        "1 if t > 5 else 0",
    ],
)
def test_spellings_of_one_step(text):
    assert list(values(text, frames=8)) == [0, 0, 0, 0, 0, 0, 1, 1]


def test_bare_number_and_bare_expression_are_one_keyframe_at_zero():
    assert np.all(values("1.5", frames=5) == 1.5)
    assert np.allclose(values("t/2", frames=5), [0, 0.5, 1, 1.5, 2])


def test_frame_zero_is_optional_the_first_keyframe_holds_backwards():
    assert list(values("10:(3), 20:(5)", frames=25)[:11]) == [3.0] * 11


def test_keyframes_past_the_last_frame_still_shape_the_curve():
    curve = values("0:(0), 200:(10)", frames=100)
    assert curve[99] == pytest.approx(99 * 10 / 200)


def test_keyframes_in_seconds_and_beats():
    seconds = values("0:(0), 2s:(10)", frames=40, fps=10)
    assert seconds[20] == 10 and seconds[10] == 5
    beats = values("0:(0), 4b:(8)", frames=40, fps=10, bpm=120)  # 4 beats at 120 bpm = 2 s = 20 frames
    assert beats[20] == 8 and beats[10] == 4


def test_positions_may_be_expressions_of_max_f():
    curve = values('0:(0), "max_f/2":(10)', frames=20)
    assert curve[10] == 10 and curve[5] == 5


def test_variables_t_s_fps_max_f():
    assert np.allclose(values("t", frames=4), [0, 1, 2, 3])
    assert np.allclose(values("s", frames=4, fps=2), [0, 0.5, 1, 1.5])
    assert np.all(values("fps", frames=3, fps=24) == 24)
    assert np.all(values("max_f", frames=7) == 7)
    assert np.all(values("max_f", frames=7, blend="hold") == 6)  # Deforum: the last frame's index


def test_constants_pi_e_and_functions():
    assert values("sin(pi/2) + e", frames=1)[0] == pytest.approx(1 + math.e)
    assert values("max(t, 2, 1) + min(t, 1)", frames=4).tolist() == [2, 3, 3, 4]
    assert values("clip(t, 1, 2)", frames=4).tolist() == [1, 1, 2, 2]
    assert values("fract(t/4)", frames=5).tolist() == [0, 0.25, 0.5, 0.75, 0]


def test_named_arrays_from_the_caller():
    timeline = Timeline(4)
    schedule = compile_schedule("0:(1 + fLo)", timeline, names={"fLo"})
    assert schedule.evaluate({"fLo": np.array([0, 0.5, 1, 0])}).tolist() == [1, 1.5, 2, 1]


# -- tween vs hold ------------------------------------------------------------------------------


def test_tween_blends_two_expressions():
    curve = values("0:(0), 30:(1), 60:(t/60)", frames=90)
    assert curve[50] == pytest.approx((1 - 20 / 30) * 1 + (20 / 30) * (50 / 60))


def test_hold_runs_each_expression_alone_until_the_next_keyframe():
    curve = values("0:(t*2), 5:(1), 7:(t)", frames=10, blend="hold")
    assert curve.tolist() == [0, 2, 4, 6, 8, 1, 4, 7, 8, 9]


def test_hold_ignores_keyframes_at_or_past_the_last_frame():
    assert np.all(values("0:(0), 20:(10)", frames=10, blend="hold") == 0)


def test_hold_duplicate_keyframe_last_wins_with_a_notice():
    with collecting_notices() as notices:
        curve = values("0:(0), 5:(10), 5:(20)", frames=10, blend="hold")
    assert curve[5] == 20
    assert any("written twice" in n for n in notices)


def test_tween_duplicate_keyframe_is_an_error():
    with pytest.raises(ScheduleError, match="two keyframes") as caught:
        values("0:(0), 5:(10), 5:(20)")
    assert caught.value.offset == len("0:(0), 5:(10), ")


def test_hold_keeps_going_where_deforum_crashed():
    assert values("5:(10)", frames=8, blend="hold").tolist() == [10] * 8  # no frame 0
    assert values("0:(where(t>5, 1, 0))", frames=8, blend="hold").tolist() == [0] * 6 + [1] * 2  # commas
    assert values("0:(sin(pi/2))", frames=2, blend="hold").tolist() == [1, 1]  # pi


def _deforum_cases():
    path = __import__("pathlib").Path(__file__).parent / "data" / "deforum_hold_cases.json"
    return json.loads(path.read_text())["cases"]


def deforum_names(text: str) -> str:
    """Deforum's ``s`` is the seed; Driftwave spells it ``seed`` (the import renames it)."""
    return re.sub(r"(?<![\w.])s(?![\w(])", "seed", text)


@pytest.mark.parametrize("case", _deforum_cases(), ids=lambda c: f"{c['schedule'][:40]}@{c['frames']}")
def test_hold_matches_values_measured_from_deforum(case):
    """280 schedules run through Deforum's own FrameInterpolater (see tests/data/deforum_hold_cases.json)."""
    timeline = Timeline(case["frames"], seed=case["seed"])
    with collecting_notices():
        schedule = compile_schedule(deforum_names(case["schedule"]), timeline, blend="hold")
        curve = schedule.evaluate()
        live = [schedule.at(frame) for frame in range(case["frames"])]
    expected = np.array(case["values"])
    np.testing.assert_allclose(curve, expected, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(live, expected, rtol=1e-12, atol=1e-9)


# -- non-finite values ------------------------------------------------------------------------------


def test_non_finite_values_keep_the_last_finite_value_with_one_notice():
    with collecting_notices() as notices:
        curve = values("0:(1/(t-3))", frames=6)
    assert curve[3] == curve[2] == pytest.approx(-1.0)
    assert np.isfinite(curve).all()
    assert len(notices) == 1 and "not finite" in notices[0]


def test_leading_non_finite_values_take_the_first_finite_one():
    with collecting_notices():
        curve = values("0:(log(t))", frames=3)
    assert curve[0] == curve[1] == 0.0


def test_never_finite_is_an_error():
    with pytest.raises(ScheduleError, match="no finite value"):
        values("0:(log(-1-t))", frames=3)


# -- live path --------------------------------------------------------------------------------------


@pytest.mark.parametrize("blend", ["tween", "hold"])
@pytest.mark.parametrize(
    "text", ["0:(sin(t)), 100:(4)", "0:(0), 30:(1), 60:(t/60)", "0:(1), 10:(t%7), 20:(2.5), 40:(cos(t/3))"]
)
def test_live_path_equals_vectorised(text, blend):
    schedule = compile_schedule(text, Timeline(80, fps=12), blend=blend)
    curve = schedule.evaluate()
    live = np.array([schedule.at(frame) for frame in range(80)])
    np.testing.assert_allclose(live, curve, rtol=1e-12, atol=1e-12)


def test_live_path_takes_scalar_audio_values():
    schedule = compile_schedule("1 + 0.5*fLo", Timeline(10), names={"fLo"})
    assert schedule.at(3, {"fLo": 0.4}) == pytest.approx(1.2)


# -- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("0:(sin(t), 30:(1)", "unclosed '('", 3),
        ("0:(1)), 30:(2)", "unmatched ')'", 6),
        ("0:(foo(t))", "unknown function 'foo'", 4),
        ("0:(1 + tt)", "unknown variable 'tt'", 8),
        ("0:(__import__('os'))", "unknown function '__import__'", 4),
        ("0:(t.real)", "attribute access", 4),
        ("0:(t[0])", "indexing", 4),
        ("0:(1), (2)", "no position", 8),
        ("0:(1):(2)", "one ':'", 6),
        ("0:(1), x:(2)", "unknown variable 'x'", 8),
        ("", "empty", 1),
        ("0:()", "empty expression", 4),
        ("0:(1 +)", "cannot read this expression", 4),
        ("0:(sin(1, 2))", "takes 1 argument", 4),
        ("0:(lambda: 1)", "lambda", 4),
        ("-3:(1)", "before frame 0", 1),
        ("0:(0), 4b:(1)", "tempo", 8),
    ],
)
def test_errors_name_the_column(text, message, column):
    with pytest.raises(ScheduleError) as caught:
        compile_schedule(text, Timeline(10), field="motion.zoom")
    error = caught.value
    assert message in error.message
    assert error.field == "motion.zoom"
    assert error.line_and_column == (1, column)
    shown = str(error)
    assert shown.startswith("motion.zoom")
    caret_line = shown.splitlines()[2]
    assert caret_line.index("^") - 4 == column - 1  # the caret sits under the column


def test_error_names_the_keyframe():
    with pytest.raises(ScheduleError) as caught:
        compile_schedule("0:(1), 30:(sinn(t))", Timeline(60))
    assert caught.value.keyframe == "30"
    assert "did you mean sin?" in caught.value.hint


def test_error_on_a_later_line_of_a_multiline_schedule():
    with pytest.raises(ScheduleError) as caught:
        compile_schedule("0:(1),\n30:(2 * q)", Timeline(60))
    assert caught.value.line_and_column == (2, 9)


# -- text schedules ------------------------------------------------------------------------------


def test_text_schedule_holds_names():
    schedule = compile_text_schedule("0:(\"euler_a\"), 3:('dpmpp_2m'), 5: ddim", Timeline(7))
    assert schedule.values() == ["euler_a"] * 3 + ["dpmpp_2m"] * 2 + ["ddim"] * 2
