"""Assignment hands each reviewer the next item with a free slot, never the same item twice."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from review.models import Assignment
from review.services import ReviewPermissionError, assignment_next, assignment_skip, human_label_submit
from tests.factories import UserFactory, review_queue


def make_reviewers(n):
    return [UserFactory(username=f"rev{i}", roles=["reviewer"]) for i in range(n)]


@pytest.mark.django_db
def test_items_are_handed_out_in_sample_order_until_each_has_overlap_labels():
    a, b, c = make_reviewers(3)
    queue = review_queue(reviewers=[a, b, c], overlap=2, queries=1, depth=2)
    first_a = assignment_next(queue=queue, reviewer=a)
    assert assignment_next(queue=queue, reviewer=a) == first_a  # an open assignment is resumed
    human_label_submit(assignment=first_a, labels={"relevance": 1}, rationale="", time_spent_ms=10, user=a)
    first_b = assignment_next(queue=queue, reviewer=b)
    assert first_b.item_id == first_a.item_id  # the item's second slot
    c_item = assignment_next(queue=queue, reviewer=c)
    assert c_item.item_id != first_a.item_id  # both slots of the first item are held


@pytest.mark.django_db
def test_a_reviewer_never_gets_the_same_item_twice():
    (a,) = make_reviewers(1)
    queue = review_queue(reviewers=[a], overlap=1, queries=1, depth=2)
    seen = []
    while (assignment := assignment_next(queue=queue, reviewer=a)) is not None:
        seen.append(assignment.item_id)
        human_label_submit(assignment=assignment, labels={"relevance": 0}, rationale="", time_spent_ms=1, user=a)
    assert len(seen) == len(set(seen)) == 2


@pytest.mark.django_db
def test_a_skipped_item_goes_back_to_the_pool_but_not_to_the_skipper():
    a, b = make_reviewers(2)
    queue = review_queue(reviewers=[a, b], overlap=1, queries=1, depth=2)
    skipped = assignment_next(queue=queue, reviewer=a)
    assignment_skip(assignment=skipped, user=a)
    assert assignment_next(queue=queue, reviewer=a).item_id != skipped.item_id
    assert assignment_next(queue=queue, reviewer=b).item_id == skipped.item_id


@pytest.mark.django_db
def test_an_expired_assignment_frees_its_slot():
    a, b = make_reviewers(2)
    queue = review_queue(reviewers=[a, b], overlap=1, queries=1, depth=1)
    held = assignment_next(queue=queue, reviewer=a)
    assert assignment_next(queue=queue, reviewer=b) is None
    Assignment.objects.filter(pk=held.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert assignment_next(queue=queue, reviewer=b).item_id == held.item_id


@pytest.mark.django_db
def test_only_the_queue_reviewers_get_items():
    a, outsider = make_reviewers(2)
    queue = review_queue(reviewers=[a], overlap=1)
    with pytest.raises(ReviewPermissionError):
        assignment_next(queue=queue, reviewer=outsider)


@pytest.mark.django_db(transaction=True)
def test_two_reviewers_in_two_threads_never_share_an_item_beyond_the_overlap():
    a, b = make_reviewers(2)
    queue = review_queue(reviewers=[a, b], overlap=1, queries=6, depth=3)  # 18 items
    taken: dict[str, list[int]] = {"rev0": [], "rev1": []}
    errors = []
    barrier = threading.Barrier(2)

    def work(user):
        try:
            barrier.wait()
            while (assignment := assignment_next(queue=queue, reviewer=user)) is not None:
                taken[user.username].append(assignment.item_id)
                human_label_submit(assignment=assignment, labels={"relevance": 2}, rationale="", time_spent_ms=1,
                                   user=user)
        except Exception as exc:  # surfaced below; a thread's exception is otherwise lost
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(u,)) for u in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    all_items = taken["rev0"] + taken["rev1"]
    assert len(all_items) == len(set(all_items)) == 18
    assert Assignment.objects.filter(queue=queue).count() == 18
