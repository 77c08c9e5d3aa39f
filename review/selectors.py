"""Reads of human review: progress, latest labels as arrays, human-human agreement."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q, QuerySet

from sage_stats import krippendorff_alpha, pairwise_agreement
from policy.models import PolicyVersion

from .models import Assignment, HumanLabel, ReviewQueue


def queues_for(user: AbstractBaseUser) -> QuerySet[ReviewQueue]:
    return (ReviewQueue.objects.select_related("sample", "policy_version__policy")
            .annotate(item_count=Count("sample__sample_items", distinct=True),
                      done_count=Count("assignments", filter=Q(assignments__status=Assignment.Status.DONE),
                                       distinct=True)))


def queue_progress(*, queue: ReviewQueue, reviewer: AbstractBaseUser | None = None,
                   detail: bool = True) -> dict[str, Any]:
    """Labels done against the target (items × overlap), per reviewer, and the viewer's own count.

    `detail=False` leaves out the per-reviewer table and the fully labelled items (None): the
    labelling page shows neither, and the latter groups every done assignment of the queue, once per
    label submitted (bench/load.py, BENCHMARKS.md "Load: concurrent reviewers")."""
    items = queue.sample.item_count  # frozen with the sample: no count of its items per page
    target = items * queue.overlap
    done = Assignment.objects.filter(queue=queue, status=Assignment.Status.DONE)
    done_total = done.count()
    per_reviewer = None
    complete = None
    if detail:
        per_reviewer = list(
            queue.reviewers.annotate(
                done=Count("assignments", filter=Q(assignments__queue=queue,
                                                   assignments__status=Assignment.Status.DONE)),
                skipped=Count("assignments", filter=Q(assignments__queue=queue,
                                                      assignments__status=Assignment.Status.SKIPPED)),
            ).order_by("username").values("username", "done", "skipped")
        )
        complete = done.values("item_id").annotate(n=Count("id")).filter(n__gte=queue.overlap).count()
    mine = done.filter(reviewer=reviewer).count() if reviewer is not None else 0
    return {
        "items": items, "target": target, "done": done_total, "complete_items": complete,
        "percent": round(100 * done_total / target) if target else 0,
        "per_reviewer": per_reviewer, "mine": mine,
        # A reviewer can label each item once, so their own ceiling is the item count.
        "mine_percent": round(100 * mine / items) if items else 0,
    }


@dataclass
class LatestLabels:
    """One row per latest label: parallel numpy arrays, one value array per rubric dimension
    (NaN where that label has no value for the dimension, e.g. a label made under another rubric)."""

    label_ids: np.ndarray
    item_ids: np.ndarray
    reviewer_ids: np.ndarray
    policy_version_ids: np.ndarray
    values: dict[str, np.ndarray] = field(default_factory=dict)

    def matrix(self, dimension: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(reviewer ids, item ids, reviewers × items matrix with NaN gaps) for Krippendorff's alpha."""
        reviewers = np.unique(self.reviewer_ids)
        items = np.unique(self.item_ids)
        grid = np.full((len(reviewers), len(items)), np.nan)
        rows = np.searchsorted(reviewers, self.reviewer_ids)
        cols = np.searchsorted(items, self.item_ids)
        grid[rows, cols] = self.values[dimension]
        return reviewers, items, grid


def human_labels_latest(*, item_ids: Iterable[int], policy_version: PolicyVersion | None = None,
                        reviewer_ids: Iterable[int] | None = None, dimensions: Iterable[str] | None = None) -> LatestLabels:
    """The latest human label of each (item, reviewer) for these items, as arrays (calibration reads this)."""
    qs = HumanLabel.objects.filter(item_id__in=list(item_ids), is_latest=True)
    if policy_version is not None:
        qs = qs.filter(policy_version=policy_version)
    if reviewer_ids is not None:
        qs = qs.filter(reviewer_id__in=list(reviewer_ids))
    rows = list(qs.order_by("item_id", "reviewer_id").values_list("id", "item_id", "reviewer_id",
                                                                  "policy_version_id", "labels"))
    if dimensions is None:
        keys = (policy_version.parsed_rubric().keys if policy_version is not None
                else sorted({k for *_, labels in rows for k in labels}))
    else:
        keys = list(dimensions)
    return LatestLabels(
        label_ids=np.array([r[0] for r in rows], dtype=np.int64),
        item_ids=np.array([r[1] for r in rows], dtype=np.int64),
        reviewer_ids=np.array([r[2] for r in rows], dtype=np.int64),
        policy_version_ids=np.array([r[3] for r in rows], dtype=np.int64),
        values={k: np.array([r[4].get(k, np.nan) for r in rows], dtype=float) for k in keys},
    )


def queue_agreement(*, queue: ReviewQueue) -> list[dict[str, Any]]:
    """Human-human agreement per dimension on the queue's items labelled by 2+ of its reviewers:
    Krippendorff's alpha over all reviewers, and Cohen's kappas for each pair of reviewers."""
    rubric = queue.policy_version.parsed_rubric()
    item_ids = queue.sample.sample_items.values_list("item_id", flat=True)
    reviewer_ids = list(queue.reviewers.values_list("id", flat=True))
    latest = human_labels_latest(item_ids=item_ids, policy_version=queue.policy_version, reviewer_ids=reviewer_ids)
    names = dict(get_user_model().objects.filter(pk__in=reviewer_ids).values_list("id", "username"))
    result = []
    for dim in rubric.dimensions:
        if len(latest.item_ids) == 0:
            result.append({"dimension": dim, "alpha": krippendorff_alpha(np.empty((0, 0)), dim.values), "pairs": []})
            continue
        reviewers, _items, grid = latest.matrix(dim.key)
        pairs = []
        for i, j in combinations(range(len(reviewers)), 2):
            both = ~np.isnan(grid[i]) & ~np.isnan(grid[j])
            if not both.any():
                continue
            stats = pairwise_agreement(grid[i, both].astype(int).tolist(), grid[j, both].astype(int).tolist(),
                                       dim.values)
            pairs.append({"a": names.get(int(reviewers[i]), "?"), "b": names.get(int(reviewers[j]), "?"), **stats})
        result.append({"dimension": dim, "alpha": krippendorff_alpha(grid, dim.values), "pairs": pairs})
    return result


def label_history(*, item_id: int, reviewer: AbstractBaseUser) -> QuerySet[HumanLabel]:
    return (HumanLabel.objects.filter(item_id=item_id, reviewer=reviewer)
            .select_related("policy_version", "created_by").order_by("-revision"))


def previous_assignment(*, queue: ReviewQueue, reviewer: AbstractBaseUser,
                        before: Assignment | None) -> Assignment | None:
    """The reviewer's labelled assignment just before `before` (or their last one): what B goes back to."""
    qs = Assignment.objects.filter(queue=queue, reviewer=reviewer, status=Assignment.Status.DONE)
    if before is not None and before.finished_at is not None:
        qs = qs.filter(finished_at__lt=before.finished_at)
    return qs.order_by("-finished_at").first()
