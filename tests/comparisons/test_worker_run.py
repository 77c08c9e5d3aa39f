"""A comparison end to end through Redis and a real Celery worker, judged by the fault server's model."""

from __future__ import annotations

import pytest

from comparisons.models import Comparison
from comparisons.services import comparison_create
from judges.services import judge_create
from tests.comparisons.helpers import comparison_traffic
from tests.conftest import wait_for
from tests.factories import UserFactory, published_version

Q, D = 5, 3


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_judges_and_computes_a_comparison_and_a_second_one_reuses_the_judgments(
        celery_worker_process, fault_endpoint):
    surface = comparison_traffic(slug="cmp-worker", queries=Q, depth=D)
    analyst = UserFactory(username="cmp-worker-analyst", roles=["analyst"])
    judge = judge_create(name="fault judge", surface=surface, user=analyst, backend="openai", model_name="test-model",
                         endpoint_name="fault", policy_version=published_version(surface), precedent_k=0, concurrency=4)
    control, treatment = surface.variants.get(name="control"), surface.variants.get(name="treatment")

    def compare() -> Comparison:
        comparison = comparison_create(surface=surface, control=control, treatment=treatment, judge_version=judge,
                                       k=D, user=analyst, source="test")
        return wait_for(lambda: Comparison.objects.filter(pk=comparison.pk, status__in=Comparison.ENDED).first(),
                        timeout=90, message="the worker to finish the comparison")

    first = compare()
    assert first.status == "done", first.message + celery_worker_process.log[-3000:]
    assert first.judge_run.status == "succeeded" and first.judge_run.done_items == Q * (2 * D - 1)
    assert first.results["coverage"] == 1.0 and first.results["queries"] == Q
    for row in first.results["metrics"].values():
        assert row["verdict"] in ("regression", "neutral", "improvement") and row["ci_low"] <= row["delta"] <= row["ci_high"]
    assert "comparison_refresh_task" in celery_worker_process.log

    second = compare()
    assert second.status == "done" and second.judge_run_id != first.judge_run_id
    # The judge cache: every item was judged by the first comparison's run, so the second costs nothing.
    assert second.judge_run.cached_items == second.judge_run.total_items and second.judge_run.tokens_in == 0
    assert second.results["metrics"] == first.results["metrics"]
