"""Human labels on a random slice of queries: PPI estimates beside the judge's, and the review-slice service."""

from __future__ import annotations

import io
import json

import pytest

from comparisons.services import ComparisonError, comparison_create, comparison_recompute, comparison_refresh, comparison_review_slice
from review.models import ReviewQueue
from review.services import human_label_import
from tests.comparisons.helpers import comparison_traffic, doc_id, imported_judge
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

Q, D = 10, 3


def _judge_grade(variant, q, rank):
    # The judge overrates the treatment's own results (2 where the humans say 0 on odd queries).
    return 3 if variant == "control" or rank == 1 else 2


def _human_grade(variant, q, rank):
    return 3 if variant == "control" or rank == 1 else (0 if q % 2 else 2)


def _comparison():
    surface = comparison_traffic(slug="ppi", queries=Q, depth=D)
    judge, analyst = imported_judge(surface, grade=_judge_grade, queries=Q, depth=D)
    comparison = comparison_create(surface=surface, control=surface.variants.get(name="control"),
                                   treatment=surface.variants.get(name="treatment"), judge_version=judge, k=D,
                                   user=analyst)
    return comparison_refresh(comparison_id=comparison.pk), analyst


def _label(comparison, analyst, queries):
    lines = []
    for q in queries:
        for variant in ("control", "treatment"):
            for rank in range(1, D + 1):
                lines.append({"assessor": "nist", "query": f"query number {q}", "doc_id": doc_id(variant, q, rank, 1),
                              "labels": {"relevance": _human_grade(variant, q, rank)}})
    human_label_import(source=io.BytesIO("\n".join(json.dumps(x) for x in lines).encode()),
                       policy_version=comparison.judge_version.policy_version, user=analyst)


def test_without_human_labels_there_is_no_ppi():
    comparison, _analyst = _comparison()
    assert all(row["ppi"] is None for row in comparison.results["metrics"].values())


def test_human_labels_on_a_slice_give_ppi_estimates_that_correct_the_judge():
    comparison, analyst = _comparison()
    judge_delta = comparison.results["metrics"]["mean_relevance@3"]["delta"]
    _label(comparison, analyst, queries=range(6))
    comparison = comparison_recompute(comparison=comparison, user=analyst)
    ppi = comparison.results["metrics"]["mean_relevance@3"]["ppi"]
    assert ppi["n_labelled"] == 6 and ppi["n_unlabelled"] == 4
    # Humans say the treatment is worse than the judge does: the PPI estimate moves down.
    assert ppi["estimate"] < judge_delta
    assert ppi["classical_estimate"] == pytest.approx(-(2 / 3 * 3 + 2 / 3 * 1) / 2)
    assert ppi["queries_needed"] is None or ppi["queries_needed"] >= 6


def test_a_review_slice_queues_every_compared_result_of_random_queries():
    comparison, analyst = _comparison()
    rita = UserFactory(username="rita", roles=["reviewer"])
    queue = comparison_review_slice(comparison=comparison, queries=4, seed=2, reviewers=[rita], user=analyst)
    assert queue.sample.item_count == 4 * (2 * D - 1)  # one shared result per query
    assert queue.policy_version == comparison.judge_version.policy_version
    again = comparison_review_slice(comparison=comparison, queries=4, seed=2, reviewers=[rita], user=analyst)
    assert list(again.sample.sample_items.values_list("item_id", flat=True)) == list(
        queue.sample.sample_items.values_list("item_id", flat=True))


@pytest.mark.parametrize("queries", [2, Q + 1])
def test_a_slice_of_too_few_or_too_many_queries_is_refused(queries):
    comparison, analyst = _comparison()
    rita = UserFactory(username="rita", roles=["reviewer"])
    with pytest.raises(ComparisonError, match="Choose from 3 to"):
        comparison_review_slice(comparison=comparison, queries=queries, seed=1, reviewers=[rita], user=analyst)
    assert ReviewQueue.objects.count() == 0


def test_a_slice_without_reviewers_writes_nothing():
    comparison, analyst = _comparison()
    from traffic.models import Sample

    samples = Sample.objects.count()
    with pytest.raises(ComparisonError, match="at least one reviewer"):
        comparison_review_slice(comparison=comparison, queries=3, seed=1, reviewers=[], user=analyst)
    assert Sample.objects.count() == samples and ReviewQueue.objects.count() == 0
