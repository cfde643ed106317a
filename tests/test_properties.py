"""Property tests: whatever users type, only Driftwave's own error type comes out."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.deforum import import_deforum_data
from engine.errors import DriftwaveError, PromptError, ScheduleError, collecting_notices
from engine.plan import compile_plan
from engine.presets import apply_override, parse_toml, settings_from_data
from engine.prompts import PromptOptions, compile_prompts
from engine.schedule import Timeline, compile_schedule, compile_text_schedule

ROOT = Path(__file__).resolve().parent.parent
ALPHABET = "0123456789:(),. tsxe+-*/%<>=`'\"[]{}|_\n\\abcfinopqwLHmax"
VALID_SCHEDULES = [
    "0:(1.0025+0.002*sin(1.25*3.14*t/30))",
    "0:(-2), 100:(4)",
    "0:(sin(t)), 100:(4)",
    "0:(where(t>5, 1, 0))",
    '0:(seed), 1:(-1), "max_f-2":(-1), "max_f-1":(seed)',
    "0: 0, 5: 10",
    "2s:(1), 4b:(t%3)",
    "1.5",
    "0:(0.375*(t%5)+15)",
    "0:(10*sin(2*3.14*t/10)), 50:(20*sin(4*3.14*t/40)), 100:(cos(t/10))",
]
VALID_PROMPTS = [
    "a (cherry:`where(cos(6.28*t/10)>0, 1.8*cos(6.28*t/10), 0.001)`) tree --neg blurry",
    "flowers: 10*fHi | sparks: (fHi+fLo) | ominous: fLo/(fLo + fHi)",
    "eggs:`cos(6.28*t/10)`, bacon:`-cos(6.28*t/10)` || a ((red)) [fox] BREAK sky",
    "a cat :1.2 AND a dog --neg text:0.5 | lowres",
]


@st.composite
def mutated(draw, originals):
    text = draw(st.sampled_from(originals))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        at = draw(st.integers(0, len(text)))
        char = draw(st.sampled_from(ALPHABET))
        if kind == "insert":
            text = text[:at] + char + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + 1 :]
        elif kind == "replace":
            text = text[:at] + char + text[at + 1 :]
        else:
            end = draw(st.integers(at, len(text)))
            text = text[:end] + text[at:end] + text[end:]
    return text


schedules = st.one_of(st.text(alphabet=ALPHABET, max_size=40), mutated(VALID_SCHEDULES))
prompts = st.one_of(st.text(max_size=60), st.text(alphabet=ALPHABET, max_size=60), mutated(VALID_PROMPTS))
timelines = st.builds(
    Timeline,
    frames=st.integers(1, 40),
    fps=st.sampled_from([1.0, 12.0, 29.97]),
    bpm=st.sampled_from([None, 120.0]),
    seed=st.integers(-1, 2**32 - 1),
)


@settings(max_examples=400, deadline=None)
@given(schedules, timelines, st.sampled_from(["tween", "hold"]))
def test_schedules_raise_only_schedule_errors(text, timeline, blend):
    with collecting_notices():
        try:
            schedule = compile_schedule(text, timeline, blend=blend, names={"fLo"})
            schedule.evaluate({"fLo": [0.5] * timeline.frames})
            schedule.at(timeline.frames - 1, {"fLo": 0.5})
        except ScheduleError:
            pass
        try:
            compile_text_schedule(text, timeline, blend=blend).values()
        except ScheduleError:
            pass


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.one_of(st.sampled_from(["0", "10", "2s", "max_f-1"]), st.text(max_size=6)), prompts, max_size=3),
    timelines,
    st.integers(-1, 12),
)
def test_prompts_raise_only_prompt_errors(table, timeline, blend_frames):
    with collecting_notices():
        try:
            schedule = compile_prompts(
                table, timeline, names={"fLo", "fHi"}, options=PromptOptions(blend_frames=blend_frames)
            )
        except PromptError:
            return
        for frame in range(0, timeline.frames, 7):
            result = schedule.at(frame, {"fLo": 0.25, "fHi": 0.0})
            json.dumps(result.as_json())


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False), st.text(max_size=12)),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
setting_keys = st.sampled_from(
    [
        "zoom",
        "max_frames",
        "W",
        "animation_mode",
        "sampler",
        "prompts",
        "filters",
        "fps",
        "blend",
        "seed",
        "motion",
        "image",
        "audio",
        "nonsense",
        "sampler_schedule",
        "strength_schedule",
        "grad_inject_timing",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(setting_keys, json_values, max_size=5))
def test_settings_data_raises_only_our_errors(data):
    with collecting_notices():
        try:
            compile_plan(settings_from_data(data))
        except DriftwaveError:
            pass


@settings(max_examples=200, deadline=None)
@given(mutated([(ROOT / "presets" / "demo.toml").read_text()]))
def test_mutated_preset_files_raise_only_our_errors(text):
    with collecting_notices():
        try:
            compile_plan(settings_from_data(parse_toml(text).unwrap()))
        except DriftwaveError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=ALPHABET + "=", max_size=30), max_size=3))
def test_overrides_raise_only_our_errors(assignments):
    data: dict = {}
    with collecting_notices():
        try:
            for assignment in assignments:
                apply_override(data, assignment)
            compile_plan(settings_from_data(data))
        except DriftwaveError:
            pass


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "prompts",
                "animation_prompts",
                "cond_prompts",
                "uncond_prompts",
                "sampler",
                "sampler_schedule",
                "zoom",
                "W",
                "depth_algorithm",
                "hybrid_flow_method",
                "add_soundtrack",
                "soundtrack_path",
                "max_frames",
                "seed",
                "diffusion_cadence",
                "animation_prompts_positive",
                "grad_inject_timing",
                "cn_1_enabled",
                "clip_name",
            ]
        ),
        json_values,
        max_size=6,
    )
)
def test_deforum_import_raises_only_our_errors(data):
    with collecting_notices():
        try:
            import_deforum_data(data)
        except DriftwaveError:
            pass
