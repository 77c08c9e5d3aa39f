from __future__ import annotations

import json

import pytest

from judges.core.schema import InvalidOutput, parse_judgment, repair_message, rubric_json_schema
from policy.rubric import parse_rubric, trec_relevance_dimension


def test_schema_has_one_bounded_integer_per_dimension_and_a_bounded_rationale(rubric):
    schema = rubric_json_schema(rubric, rationale_max_chars=300)
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert list(schema["properties"]) == ["rationale", "relevance", "freshness"]
    assert schema["required"] == ["rationale", "relevance", "freshness"]
    assert schema["properties"]["rationale"] == {"type": "string", "maxLength": 300}
    relevance = schema["properties"]["relevance"]
    assert relevance["type"] == "integer"
    assert relevance["enum"] == [0, 1, 2, 3]
    assert (relevance["minimum"], relevance["maximum"]) == (0, 3)
    assert schema["properties"]["freshness"]["enum"] == [0, 1, 2]


def test_schema_refuses_a_dimension_keyed_rationale():
    dim = trec_relevance_dimension() | {"key": "rationale"}
    with pytest.raises(ValueError, match="rationale"):
        rubric_json_schema(parse_rubric({"dimensions": [dim]}), 100)


def answer(**fields) -> str:
    return json.dumps({"rationale": "Answers it.", "relevance": 2, "freshness": 1} | fields)


def test_it_parses_a_valid_answer(rubric):
    assert parse_judgment(answer(), rubric) == ({"relevance": 2, "freshness": 1}, "Answers it.")


def test_it_accepts_a_json_code_fence(rubric):
    assert parse_judgment(f"```json\n{answer()}\n```", rubric)[0] == {"relevance": 2, "freshness": 1}


def test_it_accepts_raw_newlines_inside_strings(rubric):
    raw = '{"rationale": "line one\nline two", "relevance": 3, "freshness": 2}'
    assert parse_judgment(raw, rubric) == ({"relevance": 3, "freshness": 2}, "line one\nline two")


@pytest.mark.parametrize("raw", ["", "   ", "not json", '{"rationale": "cut', "[1, 2]", '"text"'])
def test_it_rejects_what_is_not_a_json_object(rubric, raw):
    with pytest.raises(InvalidOutput) as info:
        parse_judgment(raw, rubric)
    assert info.value.kind == "invalid_json"


def test_it_rejects_a_label_outside_the_scale(rubric):
    with pytest.raises(InvalidOutput) as info:
        parse_judgment(answer(relevance=7), rubric)
    assert info.value.kind == "out_of_scale"
    assert "relevance: 7 is outside the scale 0-3" in info.value.message


@pytest.mark.parametrize("value", ["2", 2.0, True, None])
def test_it_rejects_a_label_that_is_not_an_integer(rubric, value):
    with pytest.raises(InvalidOutput) as info:
        parse_judgment(answer(relevance=value), rubric)
    assert info.value.kind == "out_of_scale"


def test_it_never_defaults_a_missing_dimension(rubric):
    raw = json.dumps({"rationale": "x", "relevance": 2})
    with pytest.raises(InvalidOutput) as info:
        parse_judgment(raw, rubric)
    assert info.value.kind == "missing_field"
    assert "'freshness'" in info.value.message


def test_it_requires_the_rationale(rubric):
    with pytest.raises(InvalidOutput) as info:
        parse_judgment(json.dumps({"relevance": 2, "freshness": 1}), rubric)
    assert info.value.kind == "missing_field"


def test_it_rejects_unknown_fields(rubric):
    with pytest.raises(InvalidOutput) as info:
        parse_judgment(answer(safety=1), rubric)
    assert info.value.kind == "invalid_json"
    assert "'safety'" in info.value.message


def test_it_cuts_an_over_long_rationale_rather_than_failing(rubric):
    labels, rationale = parse_judgment(answer(rationale="x" * 50), rubric, rationale_max_chars=10)
    assert labels == {"relevance": 2, "freshness": 1}
    assert rationale == "x" * 9 + "…"


def test_the_repair_message_names_the_problem_and_the_scales(rubric):
    message = repair_message(InvalidOutput("out_of_scale", "relevance: 7 is outside the scale 0-3"), rubric)
    assert "relevance: 7 is outside the scale 0-3" in message
    assert "relevance: one of [0, 1, 2, 3]" in message
