"""Labels are validated against the rubric, never overwritten, and the latest revision counts."""

import io
import json

import numpy as np
import pytest

from policy.demo import COMPLETENESS
from review.models import HumanLabel
from review.selectors import human_labels_latest
from review.services import (
    LabelError,
    ReviewError,
    StaleLabelError,
    assignment_next,
    human_label_correct,
    human_label_import,
    human_label_submit,
)
from django.contrib.auth import get_user_model

from review.models import ExternalAssessor
from tests.factories import UserFactory, review_queue

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup():
    rita = UserFactory(username="rita", roles=["reviewer"])
    queue = review_queue(reviewers=[rita], overlap=1, extra_dimensions=[COMPLETENESS])
    return rita, queue


@pytest.mark.parametrize("labels, message", [
    ({"relevance": 2}, "missing label for 'completeness'"),
    ({"relevance": 4, "completeness": 1}, "relevance: 4 is outside the scale 0-3"),
    ({"relevance": 1, "completeness": 1, "freshness": 0}, "unknown dimension 'freshness'"),
    ({"relevance": "2", "completeness": 1}, "is not an integer level"),
])
def test_labels_outside_the_rubric_are_refused(setup, labels, message):
    rita, queue = setup
    assignment = assignment_next(queue=queue, reviewer=rita)
    with pytest.raises(LabelError, match=message):
        human_label_submit(assignment=assignment, labels=labels, rationale="", time_spent_ms=5, user=rita)
    assert not HumanLabel.objects.exists()


def test_a_label_records_policy_version_rubric_and_time(setup):
    rita, queue = setup
    assignment = assignment_next(queue=queue, reviewer=rita)
    label = human_label_submit(assignment=assignment, labels={"relevance": 3, "completeness": 2},
                               rationale="exact answer", time_spent_ms=4200, user=rita)
    assert label.policy_version == queue.policy_version
    assert label.rubric_hash == queue.policy_version.rubric_hash
    assert (label.revision, label.is_latest, label.time_spent_ms, label.queue) == (1, True, 4200, queue)


def test_a_correction_is_a_new_revision_and_the_history_is_kept(setup):
    rita, queue = setup
    triager = UserFactory(username="tara", roles=["reviewer"])
    assignment = assignment_next(queue=queue, reviewer=rita)
    first = human_label_submit(assignment=assignment, labels={"relevance": 0, "completeness": 0}, rationale="off topic",
                               time_spent_ms=1, user=rita)
    second = human_label_correct(label=first, labels={"relevance": 2, "completeness": 1}, rationale="answers it",
                                 user=triager, reason="human wrong: the passage gives the time")
    first.refresh_from_db()
    assert first.labels == {"relevance": 0, "completeness": 0} and not first.is_latest
    assert (second.revision, second.is_latest, second.supersedes, second.reviewer, second.created_by) == (
        2, True, first, rita, triager)
    assert second.source == "correction"
    assert list(HumanLabel.objects.filter(item=first.item, reviewer=rita).values_list("revision", flat=True)) == [2, 1]
    with pytest.raises(StaleLabelError):
        human_label_correct(label=first, labels={"relevance": 1, "completeness": 1}, rationale="", user=triager,
                            reason="stale")


def test_going_back_and_resubmitting_adds_a_revision(setup):
    rita, queue = setup
    assignment = assignment_next(queue=queue, reviewer=rita)
    human_label_submit(assignment=assignment, labels={"relevance": 1, "completeness": 1}, rationale="", time_spent_ms=1,
                       user=rita)
    assignment.refresh_from_db()
    human_label_submit(assignment=assignment, labels={"relevance": 2, "completeness": 1}, rationale="", time_spent_ms=1,
                       user=rita)
    latest = HumanLabel.objects.get(item=assignment.item, reviewer=rita, is_latest=True)
    assert latest.revision == 2 and latest.labels["relevance"] == 2


def test_the_database_refuses_two_latest_labels_for_one_reviewer_and_item(setup):
    from django.db import IntegrityError

    rita, queue = setup
    assignment = assignment_next(queue=queue, reviewer=rita)
    label = human_label_submit(assignment=assignment, labels={"relevance": 1, "completeness": 1}, rationale="",
                               time_spent_ms=1, user=rita)
    with pytest.raises(IntegrityError):
        HumanLabel.objects.create(item=label.item, reviewer=rita, policy_version=label.policy_version, labels={},
                                  rubric_hash="x", revision=2, is_latest=True)


def test_another_reviewer_cannot_submit_for_an_assignment(setup):
    rita, queue = setup
    other = UserFactory(username="otto", roles=["reviewer"])
    assignment = assignment_next(queue=queue, reviewer=rita)
    with pytest.raises(ReviewError):
        human_label_submit(assignment=assignment, labels={"relevance": 1, "completeness": 1}, rationale="",
                           time_spent_ms=1, user=other)


def test_latest_labels_come_back_as_arrays(setup):
    rita, queue = setup
    items = []
    for value in (3, 1):
        assignment = assignment_next(queue=queue, reviewer=rita)
        items.append(assignment.item_id)
        human_label_submit(assignment=assignment, labels={"relevance": value, "completeness": 1}, rationale="",
                           time_spent_ms=1, user=rita)
    latest = human_labels_latest(item_ids=items, policy_version=queue.policy_version)
    assert latest.item_ids.tolist() == sorted(items)
    assert set(latest.values) == {"relevance", "completeness"}
    assert latest.values["relevance"].dtype == np.float64
    reviewers, item_ids, grid = latest.matrix("relevance")
    assert grid.shape == (1, 2)


def _jsonl(rows):
    return io.BytesIO(b"".join(json.dumps(r).encode() + b"\n" for r in rows))


def test_label_import_is_atomic_and_idempotent(setup):
    rita, queue = setup
    analyst = UserFactory(username="queue-analyst")
    items = list(queue.sample.sample_items.select_related("item__query", "item__document"))
    rows = [{"reviewer": "nist-assessor", "query": si.item.query.text, "doc_id": si.item.document.external_id,
             "labels": {"relevance": 2, "completeness": 1}} for si in items[:2]]
    assert human_label_import(source=_jsonl(rows), policy_version=queue.policy_version, user=analyst)["created"] == 2
    again = human_label_import(source=_jsonl(rows), policy_version=queue.policy_version, user=analyst)
    assert again == {"created": 0, "unchanged": 2, "skipped": 0, "kept": 0, "new_assessors": []}
    bad = rows + [{"reviewer": "nist-assessor", "item": items[2].item.hash, "labels": {"relevance": 9, "completeness": 1}}]
    bad[0] = {**bad[0], "labels": {"relevance": 0, "completeness": 0}}
    with pytest.raises(ReviewError, match="line 3: relevance: 9 is outside the scale"):
        human_label_import(source=_jsonl(bad), policy_version=queue.policy_version, user=analyst)
    assert HumanLabel.objects.count() == 2 and not HumanLabel.objects.filter(revision=2).exists()


def test_label_import_names_bad_assessors_and_unknown_items(setup):
    rita, queue = setup
    analyst = UserFactory(username="queue-analyst")
    with pytest.raises(ReviewError, match="line 1: no such item"):
        human_label_import(source=_jsonl([{"assessor": "ghost", "item": "x", "label": 1}]),
                           policy_version=queue.policy_version, user=analyst)
    with pytest.raises(ReviewError, match="line 1: assessor 'no spaces' is not a valid account name"):
        human_label_import(source=_jsonl([{"assessor": "no spaces", "item": "x", "label": 1}]),
                           policy_version=queue.policy_version, user=analyst)
    with pytest.raises(ReviewError, match="line 1: missing field 'assessor'"):
        human_label_import(source=_jsonl([{"item": "x", "label": 1}]), policy_version=queue.policy_version,
                           user=analyst)
    assert not get_user_model().objects.filter(username="ghost").exists()  # rolled back with the import


def test_label_import_resolves_item_hashes_chunk_by_chunk(setup, monkeypatch):
    """Items have no index on their hash: a label file's hashes are resolved a chunk at a time.
    Every chunk finds its own items, and an error is still reported at the first bad line, even
    when a later line of the same chunk is not JSON at all."""
    from review import services

    monkeypatch.setattr(services, "LABEL_IMPORT_CHUNK", 2)
    rita, queue = setup
    analyst = UserFactory(username="queue-analyst")
    items = [si.item for si in queue.sample.sample_items.select_related("item")]
    rows = [{"reviewer": "nist", "item": item.hash, "labels": {"relevance": n % 4, "completeness": 1}}
            for n, item in enumerate(items)]
    assert len(rows) > 4
    stats = human_label_import(source=_jsonl(rows), policy_version=queue.policy_version, user=analyst)
    assert stats == {"created": len(rows), "unchanged": 0, "skipped": 0, "kept": 0, "new_assessors": ["nist"]}
    got = dict(HumanLabel.objects.filter(is_latest=True).values_list("item__hash", "labels__relevance"))
    assert got == {item.hash: n % 4 for n, item in enumerate(items)}

    both = {"relevance": 1, "completeness": 1}
    bad = _jsonl([{"reviewer": "nist", "item": items[0].hash, "labels": both},
                  {"reviewer": "nist", "item": "no-such-hash", "labels": both}]).getvalue() + b"{not json\n"
    with pytest.raises(ReviewError, match="line 2: no such item"):
        human_label_import(source=io.BytesIO(bad), policy_version=queue.policy_version, user=analyst)
    with pytest.raises(ReviewError, match=r"line 3: bad JSON"):
        human_label_import(source=io.BytesIO(bad.replace(b"no-such-hash", items[1].hash.encode())),
                           policy_version=queue.policy_version, user=analyst)
    assert HumanLabel.objects.count() == len(rows)


# --- imported labels are their own source (issue 12) --------------------------------------------

def test_label_import_refuses_to_write_in_a_reviewers_name(setup):
    """Before: an analyst's file naming "rita" wrote a label as rita, superseding what she labelled."""
    rita, queue = setup
    analyst = UserFactory(username="queue-analyst", roles=["analyst"])
    assignment = assignment_next(queue=queue, reviewer=rita)
    own = human_label_submit(assignment=assignment, labels={"relevance": 3, "completeness": 2}, rationale="mine",
                             time_spent_ms=None, user=rita)
    row = {"reviewer": "rita", "item": assignment.item.hash, "labels": {"relevance": 0, "completeness": 0}}
    with pytest.raises(ReviewError, match="line 1: 'rita' is a SAGE user: imported labels are never written"):
        human_label_import(source=_jsonl([row]), policy_version=queue.policy_version, user=analyst)
    own.refresh_from_db()
    assert own.is_latest and HumanLabel.objects.filter(reviewer=rita).count() == 1


def test_imported_labels_belong_to_an_external_assessor_and_leave_app_labels_alone(setup):
    rita, queue = setup
    analyst = UserFactory(username="queue-analyst", roles=["analyst"])
    assignment = assignment_next(queue=queue, reviewer=rita)
    own = human_label_submit(assignment=assignment, labels={"relevance": 3, "completeness": 2}, rationale="mine",
                             time_spent_ms=None, user=rita)
    row = {"assessor": "vendor-x", "item": assignment.item.hash, "labels": {"relevance": 0, "completeness": 0}}
    stats = human_label_import(source=_jsonl([row]), policy_version=queue.policy_version, user=analyst)
    assert stats["created"] == 1 and stats["new_assessors"] == ["vendor-x"]
    imported = HumanLabel.objects.get(reviewer__username="vendor-x")
    assert imported.source == HumanLabel.Source.IMPORT and imported.created_by == analyst and imported.is_latest
    vendor = imported.reviewer
    assert not vendor.is_active and not vendor.has_usable_password() and not vendor.groups.exists()
    assert ExternalAssessor.objects.get(user=vendor).created_by == analyst
    own.refresh_from_db()
    assert own.is_latest and own.labels == {"relevance": 3, "completeness": 2}


def test_a_triage_correction_of_an_imported_label_survives_a_reimport(setup):
    rita, queue = setup
    analyst = UserFactory(username="queue-analyst", roles=["analyst"])
    item = queue.sample.sample_items.first().item
    row = {"assessor": "nist", "item": item.hash, "labels": {"relevance": 0, "completeness": 0}}
    human_label_import(source=_jsonl([row]), policy_version=queue.policy_version, user=analyst)
    imported = HumanLabel.objects.get(reviewer__username="nist")
    corrected = human_label_correct(label=imported, labels={"relevance": 3, "completeness": 2}, rationale="",
                                    user=rita, reason="NIST missed the answer")
    stats = human_label_import(source=_jsonl([row]), policy_version=queue.policy_version, user=analyst)
    assert stats["kept"] == 1 and stats["created"] == 0
    corrected.refresh_from_db()
    assert corrected.is_latest and corrected.labels["relevance"] == 3


def test_an_import_dry_run_writes_nothing(setup):
    rita, queue = setup
    analyst = UserFactory(username="queue-analyst", roles=["analyst"])
    item = queue.sample.sample_items.first().item
    row = {"assessor": "nist", "item": item.hash, "labels": {"relevance": 1, "completeness": 1}}
    stats = human_label_import(source=_jsonl([row]), policy_version=queue.policy_version, user=analyst, dry_run=True)
    assert stats["created"] == 1 and stats["new_assessors"] == ["nist"]
    assert not HumanLabel.objects.exists() and not get_user_model().objects.filter(username="nist").exists()


def test_an_account_made_for_imports_before_external_assessors_is_adopted(setup):
    """The demo's "nist-assessor" predates external assessors: no password, no role, no app labels."""
    rita, queue = setup
    analyst = UserFactory(username="queue-analyst", roles=["analyst"])
    legacy = get_user_model().objects.create(username="nist-assessor")
    legacy.set_unusable_password()
    legacy.save()
    item = queue.sample.sample_items.first().item
    row = {"reviewer": "nist-assessor", "item": item.hash, "labels": {"relevance": 1, "completeness": 1}}
    human_label_import(source=_jsonl([row]), policy_version=queue.policy_version, user=analyst)
    assert ExternalAssessor.objects.filter(user=legacy).exists()


def test_the_label_write_itself_refuses_an_import_over_an_app_label(setup):
    from review.services import _label_write

    rita, queue = setup
    assignment = assignment_next(queue=queue, reviewer=rita)
    human_label_submit(assignment=assignment, labels={"relevance": 3, "completeness": 2}, rationale="",
                       time_spent_ms=None, user=rita)
    with pytest.raises(LabelError, match="never replaces a label made in the app"):
        _label_write(item_id=assignment.item_id, reviewer=rita, policy_version=queue.policy_version,
                     labels={"relevance": 0, "completeness": 0}, rationale="", source=HumanLabel.Source.IMPORT,
                     created_by=None)


def test_an_assessor_made_by_another_import_at_the_same_moment_is_used_not_a_database_error(setup, monkeypatch):
    """Two imports naming a new assessor at once: the second one's insert collides; it takes the account."""
    rita, queue = setup
    analyst = UserFactory(username="queue-analyst", roles=["analyst"])
    items = list(queue.sample.sample_items.select_related("item__query", "item__document"))
    row = {"assessor": "vendor-y", "item": items[0].item.hash, "labels": {"relevance": 1, "completeness": 1}}
    human_label_import(source=_jsonl([row]), policy_version=queue.policy_version, user=analyst)
    # The other import's account exists, but this one looked before it was committed.
    User = get_user_model()
    real_filter = User.objects.filter
    monkeypatch.setattr(User.objects, "filter", lambda *a, **kw: User.objects.none() if kw == {"username": "vendor-y"}
                        else real_filter(*a, **kw))
    row2 = {**row, "item": items[1].item.hash}
    stats = human_label_import(source=_jsonl([row2]), policy_version=queue.policy_version, user=analyst)
    assert stats["created"] == 1 and stats["new_assessors"] == []
    assert set(HumanLabel.objects.filter(reviewer__username="vendor-y").values_list("item_id", flat=True)) == {
        items[0].item_id, items[1].item_id}
