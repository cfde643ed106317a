"""The prompt language: emphasis, weighted sub-prompts, negatives, scenes, keys and blends."""

from __future__ import annotations

import pytest

from engine.errors import PromptError, collecting_notices
from engine.prompts import PromptOptions, compile_prompts, parse_emphasis
from engine.schedule import Timeline

NAMES = {"t", "s", "max_f", "fps", "seed", "fLo", "fHi"}


def emphasis(text: str) -> list[tuple[str, float]]:
    return [
        (chunk.text, chunk.weight.at({})) for chunk in parse_emphasis(text, NAMES, field="p", source=text, offset=0)
    ]


def frame(prompts: dict, index: int = 0, frames: int = 100, variables=None, **options):
    schedule = compile_prompts(prompts, Timeline(frames), names={"fLo", "fHi"}, options=PromptOptions(**options))
    return schedule.at(index, variables)


# -- A1111 emphasis (vectors from A1111's own doctest) ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("normal text", [("normal text", 1.0)]),
        ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
        (r"\(literal\]", [("(literal]", 1.0)]),
        ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
        (
            "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
            [
                ("a ", 1.0),
                ("house", 1.5730000000000004),
                (" ", 1.1),
                ("on", 1.0),
                (" a ", 1.1),
                ("hill", 0.55),
                (", sun, ", 1.1),
                ("sky", 1.4641000000000006),
                (".", 1.1),
            ],
        ),
        ("((a))", [("a", 1.2100000000000002)]),
        ("[a]", [("a", 0.9090909090909091)]),
        ("(a:.5)", [("a", 0.5)]),
        ("(a: 1.5 )", [("a", 1.5)]),
    ],
)
def test_a1111_emphasis(text, expected):
    assert emphasis(text) == expected


def test_backtick_expression_as_emphasis_weight():
    text = "(cherry:`where(cos(6.28*t/10)>0, 1.8*cos(6.28*t/10), 0.001)`)"
    chunks = parse_emphasis(text, NAMES, field="p", source=text, offset=0)
    assert chunks[0].text == "cherry"
    assert chunks[0].weight.at({"t": 0.0}) == pytest.approx(1.8)
    assert chunks[0].weight.at({"t": 5.0}) == pytest.approx(0.001)


def test_deforum_cherry_prompt_resolves_to_numbers_per_frame():
    prompt = "a tree with (cherry:`where(cos(6.28*t/10)>0, 1.8*cos(6.28*t/10), 0.001)`) blossoms"
    assert frame({"0": prompt}, 0).as_json()["positive"] == [["a tree with (cherry:1.8) blossoms", 1.0]]
    assert frame({"0": prompt}, 5).as_json()["positive"] == [["a tree with (cherry:0.001) blossoms", 1.0]]


# -- sub-prompts and negatives --------------------------------------------------------------------------


def test_pytti_subprompts_with_expression_weights():
    prompts = {"0": "a photograph of a spring day:2 | flowers blooming: 10*fHi | ominous: fLo/(fLo + fHi)"}
    result = frame(prompts, 0, variables={"fHi": 0.5, "fLo": 0.5}).as_json()
    assert result["positive"] == [["a photograph of a spring day", 2.0], ["flowers blooming", 5.0], ["ominous", 0.5]]


def test_negative_weight_becomes_negative_conditioning():
    result = frame({"0": "eggs:`cos(6.28*t/10)`, bacon:`-cos(6.28*t/10)`"}, 0).as_json()
    assert result == {"positive": [["eggs", 1.0]], "negative": [["bacon", 1.0]], "loras": []}
    flipped = frame({"0": "eggs:`cos(6.28*t/10)`, bacon:`-cos(6.28*t/10)`"}, 5).as_json()
    assert flipped["positive"][0][0] == "bacon" and flipped["negative"][0][0] == "eggs"


def test_neg_splits_and_negative_prompt_setting_joins():
    result = frame({"0": "a cat --neg blurry | text:0.5"}, negative_prompt="lowres").as_json()
    assert result == {
        "positive": [["a cat", 1.0]],
        "negative": [["blurry", 1.0], ["text", 0.5], ["lowres", 1.0]],
        "loras": [],
    }


def test_a1111_and_separates_subprompts():
    result = frame({"0": "a cat :1.2 AND a dog"}).as_json()
    assert result["positive"] == [["a cat", 1.2], ["a dog", 1.0]]


def test_colon_in_prose_stays_text():
    assert frame({"0": "style: impressionism"}).as_json()["positive"] == [["style: impressionism", 1.0]]
    assert frame({"0": r"ratio \: wide"}).as_json()["positive"] == [["ratio : wide", 1.0]]


def test_token_emphasis_is_reported_per_frame():
    result = frame({"0": "a ((red)) fox"})
    sub = result.positive[0][0]
    assert result.emphasis(sub) == [("a ", 1.0), ("red", pytest.approx(1.21)), (" fox", 1.0)]
    assert sub.plain == "a red fox"


# -- keys, blends, scenes --------------------------------------------------------------------------------


def test_prompts_switch_at_keys_without_blend():
    prompts = {"0": "apple", "20": "banana"}
    assert frame(prompts, 19).as_json()["positive"] == [["apple", 1.0]]
    assert frame(prompts, 20).as_json()["positive"] == [["banana", 1.0]]


def test_prompts_cross_fade_over_blend_frames_ending_at_the_key():
    prompts = {"0": "apple", "20": "banana"}
    assert frame(prompts, 14, blend_frames=4).as_json()["positive"] == [["apple", 1.0]]
    assert frame(prompts, 18, blend_frames=4).as_json()["positive"] == [["apple", 0.5], ["banana", 0.5]]
    assert frame(prompts, 20, blend_frames=4).as_json()["positive"] == [["banana", 1.0]]
    whole = frame(prompts, 5, blend_frames=-1).as_json()["positive"]
    assert whole == [["apple", 0.75], ["banana", 0.25]]


def test_keys_in_seconds_and_expressions():
    schedule = compile_prompts({"0": "a", "2s": "b", "max_f-1": "c"}, Timeline(60, fps=10))
    assert [key.position for key in schedule.keys] == [0, 20, 59]


def test_frames_before_the_first_key_use_it():
    assert frame({"10": "late"}, 0).as_json()["positive"] == [["late", 1.0]]


def test_scenes_share_the_time_to_the_next_key_with_prefix_and_suffix():
    schedule = compile_prompts(
        {"0": "forest || desert", "40": "sea"},
        Timeline(100),
        options=PromptOptions(scene_prefix="oil painting of a ", scene_suffix=", trending"),
    )
    assert [(key.position, key.scene.positive[0].plain) for key in schedule.keys] == [
        (0, "oil painting of a forest, trending"),
        (20, "oil painting of a desert, trending"),
        (40, "oil painting of a sea, trending"),
    ]


def test_same_subprompt_in_both_blended_prompts_adds_up():
    result = frame({"0": "red --neg blur", "10": "blue --neg blur"}, 5, blend_frames=10).as_json()
    assert result["negative"] == [["blur", 1.0]]


def test_distinct_texts_are_listed_once():
    schedule = compile_prompts({"0": "a | b --neg c", "10": "b | (a:1.3)"}, Timeline(20))
    assert schedule.distinct_texts() == ["a", "b", "c"]


# -- errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompts", "message", "field"),
    [
        ({"0": "a (red fox"}, "unclosed '('", "prompts.0"),
        ({"0": "a red] fox"}, "unmatched ']'", "prompts.0"),
        ({"0": "fox: 10*fHii"}, "unknown variable 'fHii'", "prompts.0"),
        ({"0": "(fox:`bogus(t)`)"}, "unknown function 'bogus'", "prompts.0"),
        ({"abc": "fox"}, "unknown variable 'abc'", "prompts.abc"),
        ({"-4": "fox"}, "before frame 0", "prompts.-4"),
        ({"0": "a", "0.0": "b"}, "both frame 0", "prompts.0.0"),
        ({}, "no prompts", "prompts"),
        ({"0": "eggs: 2 bacon: x"}, "cannot tell where", "prompts.0"),
    ],
)
def test_prompt_errors_name_the_field(prompts, message, field):
    with pytest.raises(PromptError) as caught:
        compile_prompts(prompts, Timeline(100), names={"fLo", "fHi"})
    assert message in caught.value.message
    assert caught.value.field == field


def test_key_past_the_end_is_a_notice():
    with collecting_notices() as notices:
        compile_prompts({"0": "a", "500": "b"}, Timeline(100))
    assert notices == ["prompts.500: frame 500 is past the last frame (99)"]
