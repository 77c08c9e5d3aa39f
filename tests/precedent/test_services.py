import pytest

from precedent.models import Precedent
from precedent.services import (
    PrecedentData,
    PrecedentError,
    StalePrecedentError,
    precedent_create,
    precedent_set_snapshot,
    precedent_update,
    precedents_accept,
    precedents_retire,
)
from tests.policy_factories import FRESHNESS, publish_next, publish_policy, rubric_json
from tests.precedent_factories import make_precedent

pytestmark = pytest.mark.django_db


def data(**overrides) -> PrecedentData:
    return PrecedentData(**({"query": "q", "body": "b", "labels": {"relevance": 2}, "rationale": "r"} | overrides))


def test_it_validates_labels_against_the_published_rubric(reviewer):
    v1 = publish_policy()
    with pytest.raises(PrecedentError) as info:
        precedent_create(policy=v1.policy, data=data(labels={"relevance": 7}), user=reviewer)
    assert info.value.errors["labels"] == ["relevance: 7 is outside the scale 0-3"]
    with pytest.raises(PrecedentError) as info:
        precedent_create(policy=v1.policy, data=data(labels={"freshness": 1}), user=reviewer)
    assert "unknown dimension 'freshness'" in info.value.errors["labels"]
    assert "missing the overall label 'relevance'" in info.value.errors["labels"]
    assert not Precedent.objects.exists()


def test_it_checks_the_cited_clause_exists(reviewer):
    v1 = publish_policy()
    with pytest.raises(PrecedentError) as info:
        precedent_create(policy=v1.policy, data=data(clause="no-such-clause"), user=reviewer)
    assert info.value.errors["clause"] == ["no clause §no-such-clause in v1"]
    ok = precedent_create(policy=v1.policy, data=data(clause="scope"), user=reviewer)
    assert ok.clause == "scope"


def test_it_enforces_size_limits(reviewer):
    v1 = publish_policy()
    with pytest.raises(PrecedentError) as info:
        precedent_create(policy=v1.policy, data=data(body="x" * 20_001), user=reviewer)
    assert info.value.errors["body"] == ["is 20,001 characters; the limit is 20,000"]


def test_edits_keep_a_revision_history_and_use_optimistic_locking(reviewer):
    v1 = publish_policy()
    p = precedent_create(policy=v1.policy, data=data(), user=reviewer)
    precedent_update(precedent=p, data=data(rationale="better reason"), user=reviewer, expected_revision=1, note="clarify")
    with pytest.raises(StalePrecedentError):
        precedent_update(precedent=p, data=data(rationale="stale"), user=reviewer, expected_revision=1)
    p.refresh_from_db()
    assert p.rationale == "better reason" and p.revision == 2
    assert [(r.number, r.note, r.snapshot["rationale"]) for r in p.revisions.order_by("number")] == [
        (1, "created", "r"), (2, "clarify", "better reason")]


def test_accepting_records_the_version_and_is_all_or_nothing(reviewer):
    v1 = publish_policy()
    good = precedent_create(policy=v1.policy, data=data(), user=reviewer)
    v2 = publish_next(v1, rubric={"dimensions": [
        {**rubric_json()["dimensions"][0], "levels": rubric_json()["dimensions"][0]["levels"][:2]}, FRESHNESS]})
    # `good` has relevance=2, which v2's 0-1 scale no longer allows.
    fits = Precedent.objects.create(policy=v1.policy, query="q2", body="b", labels={"relevance": 1}, rationale="r",
                                    content_hash="x", author=reviewer)
    with pytest.raises(PrecedentError, match=f"#{good.pk} cannot be accepted under v2"):
        precedents_accept(precedents=[fits, good], user=reviewer)
    assert Precedent.objects.filter(status="accepted").count() == 0
    assert precedents_accept(precedents=[fits], user=reviewer) == 1
    fits.refresh_from_db()
    assert fits.accepted_version == v2


def test_retire_and_the_snapshot_hash(reviewer):
    v1 = publish_policy()
    a = make_precedent(v1.policy, query="a")
    b = make_precedent(v1.policy, query="b")
    first = precedent_set_snapshot(policy=v1.policy)
    assert first.size == 2 and precedent_set_snapshot(policy=v1.policy).pk == first.pk
    precedents_retire(precedents=[b], user=reviewer)
    second = precedent_set_snapshot(policy=v1.policy)
    assert second.hash != first.hash and second.members == [[a.pk, a.content_hash]]
    precedent_update(precedent=a, data=data(query="a", rationale="edited"), user=reviewer, expected_revision=a.revision)
    assert precedent_set_snapshot(policy=v1.policy).hash != second.hash


def test_only_reviewers_curate(analyst):
    v1 = publish_policy()
    with pytest.raises(PrecedentError, match="Only reviewers"):
        precedent_create(policy=v1.policy, data=data(), user=analyst)
