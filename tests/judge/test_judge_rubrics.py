"""Rubrics: strict parsing of the judge's JSON (failures are never scores)."""

from __future__ import annotations

import pytest

from talkwalk_bench.errors import BenchError, SpecError
from talkwalk_bench.judge.rubrics import ParseError, extract_json, load_rubric, rubric_names


@pytest.fixture(scope="module")
def score():
    return load_rubric("instruction_following")


@pytest.fixture(scope="module")
def choice():
    return load_rubric("pairwise_preference")


def test_bundled_rubrics_load_with_versions():
    names = rubric_names()
    for n in ("instruction_following", "explanation_coherence", "pairwise_preference", "simulated_user"):
        assert n in names
        assert load_rubric(n).version >= 1


@pytest.mark.parametrize("text,expected", [
    ('{"score": 4, "reason": "fits"}', 4),
    ('Sure! ```json\n{"score": 2}\n```', 2),
    ('My answer is {"score": "5", "reason": "all fit"} thanks', 5),
    ('{"score": 3.0}', 3),
])
def test_score_answers_that_parse(score, text, expected):
    assert score.parse(text)["score"] == expected


@pytest.mark.parametrize("text", [
    "", "four", '{"score": 6}', '{"score": 0}', '{"score": 3.5}', '{"score": true}', '{"rating": 4}', '[4]', '{"score": "four"}',
])
def test_score_answers_that_do_not_parse(score, text):
    with pytest.raises(ParseError):
        score.parse(text)


def test_choice_is_case_insensitive_and_strict(choice):
    assert choice.parse('{"choice": "b"}')["choice"] == "B"
    assert choice.parse('{"choice": "TIE"}')["choice"] == "tie"
    with pytest.raises(ParseError):
        choice.parse('{"choice": "C"}')


def test_messages_fill_the_template_and_name_a_missing_variable(score):
    msgs = score.messages(request="a comedy", items="1. Toy Story")
    assert msgs[0]["role"] == "system" and "a comedy" in msgs[1]["content"] and "1. Toy Story" in msgs[1]["content"]
    with pytest.raises(BenchError, match="items"):
        score.messages(request="x")


def test_extract_json_skips_braces_that_are_not_json():
    assert extract_json('I think {not json} but {"a": 1}') == {"a": 1}


def test_unknown_rubric_names_the_known_ones():
    with pytest.raises(SpecError, match="instruction_following"):
        load_rubric("nope")


def test_a_rubric_file_with_a_bad_kind_is_rejected(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("name: r\nversion: 1\nkind: score\nsystem: s\ntemplate: t\n")
    with pytest.raises(SpecError, match="scale"):
        load_rubric(str(p))


def test_an_answer_cut_off_after_its_first_field_keeps_it(score, choice):
    got = score.parse('{"score": 1, "reason": "1.1.1.1.1.1.1.1.1.1.1.1.1.1')
    assert got["score"] == 1 and got["cut_off"] is True
    assert choice.parse('{"choice": "B", "reason": "List B is')["choice"] == "B"
    # only a complete first field counts: a number still being written, or an invalid value, is no answer
    for text in ('{"score": 4.', '{"score": 4', '{"reason": "x", "score": 2', '{"score": 9, "reason": "', 'x {"score": 2, '):
        with pytest.raises(ParseError):
            score.parse(text)
    with pytest.raises(ParseError):
        choice.parse('{"choice": "A, B or tie", "reason": "A')
    assert "cut_off" not in score.parse('{"score": 2, "reason": "ok"}')
