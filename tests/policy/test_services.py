import pytest
from django.db import IntegrityError, connection, transaction

from policy.models import PolicyVersion
from policy.rubric import RubricError
from policy.services import (
    ImmutableVersionError,
    PolicyError,
    PolicyPermissionError,
    StaleDraftError,
    policy_draft_start,
    policy_draft_update,
    policy_version_publish,
)
from tests.policy_factories import FRESHNESS, POLICY_TEXT, publish_next, publish_policy, rubric_json

pytestmark = pytest.mark.django_db


def test_publishing_numbers_versions_and_extracts_clauses():
    v1 = publish_policy()
    assert (v1.number, v1.status) == (1, "published")
    assert list(v1.clauses.values_list("anchor", flat=True)) == ["relevance", "scope", "perfectly-relevant-3", "irrelevant-0"]
    v2 = publish_next(v1, rubric=rubric_json(FRESHNESS))
    assert v2.number == 2
    assert v2.based_on == v1
    assert v2.rubric_hash != v1.rubric_hash


def test_a_published_version_cannot_be_edited_through_the_service():
    v1 = publish_policy()
    with pytest.raises(ImmutableVersionError):
        policy_draft_update(draft=v1, user=v1.published_by, expected_lock_version=v1.lock_version, text="changed")
    v1.refresh_from_db()
    assert v1.text == POLICY_TEXT


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the immutability trigger exists on PostgreSQL")
def test_the_database_refuses_to_change_a_published_version():
    v1 = publish_policy()
    with pytest.raises(IntegrityError, match="is published and cannot change"), transaction.atomic():
        PolicyVersion.objects.filter(pk=v1.pk).update(text="sneaky")
    with pytest.raises(IntegrityError, match="cannot be deleted"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM policy_policyversion WHERE id = %s", [v1.pk])
    v1.refresh_from_db()
    assert v1.text == POLICY_TEXT


def test_two_editors_cannot_silently_overwrite_each_other(reviewer, make_user):
    v1 = publish_policy()
    other = make_user("reviewer", username="otto")
    draft = policy_draft_start(policy=v1.policy, user=reviewer)
    loaded_by_rita = loaded_by_otto = draft.lock_version
    policy_draft_update(draft=draft, user=other, expected_lock_version=loaded_by_otto, text="Otto's text")
    with pytest.raises(StaleDraftError, match="otto saved this draft"):
        policy_draft_update(draft=draft, user=reviewer, expected_lock_version=loaded_by_rita, text="Rita's text")
    draft.refresh_from_db()
    assert draft.text == "Otto's text"


def test_an_invalid_rubric_is_refused_and_nothing_changes(reviewer):
    v1 = publish_policy()
    draft = policy_draft_start(policy=v1.policy, user=reviewer)
    bad = rubric_json()
    bad["dimensions"][0]["levels"][1]["definition"] = ""
    with pytest.raises(RubricError) as info:
        policy_draft_update(draft=draft, user=reviewer, expected_lock_version=draft.lock_version, rubric=bad, text="x")
    assert "dimensions[0].levels[1].definition" in info.value.errors
    draft.refresh_from_db()
    assert draft.text == POLICY_TEXT and draft.lock_version == 1


def test_only_admins_publish(reviewer):
    v1 = publish_policy()
    draft = policy_draft_start(policy=v1.policy, user=reviewer)
    with pytest.raises(PolicyPermissionError):
        policy_version_publish(draft=draft, user=reviewer, change_note="mine", expected_lock_version=draft.lock_version)


def test_only_reviewers_edit(analyst):
    v1 = publish_policy()
    with pytest.raises(PolicyPermissionError):
        policy_draft_start(policy=v1.policy, user=analyst)


def test_publishing_needs_a_change_note(admin_user):
    v1 = publish_policy()
    draft = policy_draft_start(policy=v1.policy, user=admin_user)
    with pytest.raises(PolicyError, match="change note is required"):
        policy_version_publish(draft=draft, user=admin_user, change_note=" ", expected_lock_version=draft.lock_version)


def test_publishing_a_draft_changed_since_review_is_refused(admin_user, reviewer):
    v1 = publish_policy()
    draft = policy_draft_start(policy=v1.policy, user=admin_user)
    reviewed_at = draft.lock_version
    policy_draft_update(draft=draft, user=reviewer, expected_lock_version=reviewed_at, text="late change")
    with pytest.raises(StaleDraftError):
        policy_version_publish(draft=draft, user=admin_user, change_note="ok", expected_lock_version=reviewed_at)


def test_there_is_one_open_draft_per_policy(reviewer, make_user):
    v1 = publish_policy()
    first = policy_draft_start(policy=v1.policy, user=reviewer)
    second = policy_draft_start(policy=v1.policy, user=make_user("reviewer", username="otto"))
    assert first.pk == second.pk
    with pytest.raises(IntegrityError), transaction.atomic():
        PolicyVersion.objects.create(policy=v1.policy, text="", rubric=v1.rubric, rubric_hash=v1.rubric_hash,
                                     created_by=reviewer)


def test_policy_text_has_a_size_limit(reviewer):
    v1 = publish_policy()
    draft = policy_draft_start(policy=v1.policy, user=reviewer)
    with pytest.raises(PolicyError, match="the limit is 50,000"):
        policy_draft_update(draft=draft, user=reviewer, expected_lock_version=draft.lock_version, text="x" * 50_001)
