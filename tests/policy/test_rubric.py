import copy

import pytest

from policy.rubric import RubricError, parse_rubric
from tests.policy_factories import FRESHNESS, rubric_json


def errors_of(data) -> dict[str, list[str]]:
    with pytest.raises(RubricError) as info:
        parse_rubric(data)
    return info.value.errors


def test_it_parses_a_valid_multi_dimensional_rubric():
    rubric = parse_rubric(rubric_json(FRESHNESS))
    assert rubric.keys == ["relevance", "freshness"]
    assert rubric.overall.key == "relevance"
    assert rubric.dimension("relevance").values == [0, 1, 2, 3]


def test_its_hash_is_stable_and_changes_with_content():
    a, b = parse_rubric(rubric_json()), parse_rubric(rubric_json())
    assert a.hash == b.hash
    changed = rubric_json()
    changed["dimensions"][0]["levels"][0]["definition"] = "Off topic."
    assert parse_rubric(changed).hash != a.hash


def test_it_reports_duplicate_keys_on_the_field():
    data = rubric_json(FRESHNESS, copy.deepcopy(FRESHNESS))
    assert errors_of(data)["dimensions[2].key"] == ["duplicate key 'freshness'"]


def test_it_reports_gaps_in_a_scale():
    data = rubric_json()
    del data["dimensions"][0]["levels"][1]
    assert errors_of(data)["dimensions[0].levels"] == ["the scale has gaps: missing 1"]


def test_it_reports_empty_definitions_with_their_path():
    data = rubric_json()
    data["dimensions"][0]["levels"][2]["definition"] = "  "
    assert errors_of(data)["dimensions[0].levels[2].definition"] == ["must not be empty"]


def test_it_requires_exactly_one_overall_dimension():
    data = rubric_json(FRESHNESS)
    data["dimensions"][0]["overall"] = False
    assert errors_of(data)["overall"] == ["mark one dimension as the overall label"]
    data = rubric_json({**FRESHNESS, "overall": True})
    assert errors_of(data)["overall"] == ["only one dimension can be the overall label"]


def test_it_collects_every_problem_at_once():
    data = rubric_json()
    data["dimensions"][0]["key"] = "Bad Key"
    data["dimensions"][0]["name"] = ""
    data["dimensions"][0]["levels"][0]["value"] = "x"
    errors = errors_of(data)
    assert {"dimensions[0].key", "dimensions[0].name", "dimensions[0].levels[0].value"} <= set(errors)


@pytest.mark.parametrize("bad", [None, [], {"dimensions": "x"}, {"dimensions": []}])
def test_it_rejects_malformed_input(bad):
    assert errors_of(bad)


def test_it_validates_labels_against_scales():
    rubric = parse_rubric(rubric_json(FRESHNESS))
    assert rubric.validate_labels({"relevance": 3, "freshness": 1}) == []
    assert rubric.validate_labels({"relevance": 4, "freshness": 1}) == ["relevance: 4 is outside the scale 0-3"]
    assert rubric.validate_labels({"relevance": True, "freshness": 1}) == ["relevance: True is not an integer level"]
    assert rubric.validate_labels({"relevance": 1}) == ["missing label for 'freshness'"]
    assert rubric.validate_labels({"relevance": 1, "freshness": 0, "tone": 1}) == ["unknown dimension 'tone'"]
