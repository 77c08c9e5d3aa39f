"""comparison_create / comparison_refresh with an imported judge (no model): validation, results, idempotence."""

from __future__ import annotations

import pytest

from comparisons.models import Comparison
from comparisons.services import ComparisonError, QuerySpec, comparison_create, comparison_refresh
from judges.models import JudgeRun
from tests.comparisons.helpers import comparison_traffic, imported_judge
from tests.factories import UserFactory
from traffic.models import Sample

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

Q, D = 8, 4


def _worse_treatment(variant: str, q: int, rank: int) -> int:
    # control's results are highly relevant; the treatment's own results (ranks 2+) are irrelevant.
    return 3 if variant == "control" or rank == 1 else 0


def _setup(grade=_worse_treatment, **kw):
    surface = comparison_traffic(queries=Q, depth=D)
    judge, analyst = imported_judge(surface, grade=grade, queries=Q, depth=D, **kw)
    control, treatment = surface.variants.get(name="control"), surface.variants.get(name="treatment")
    return surface, control, treatment, judge, analyst


def _create(surface, control, treatment, judge, analyst, **kw):
    kw.setdefault("k", D)
    return comparison_create(surface=surface, control=control, treatment=treatment, judge_version=judge, user=analyst,
                             **kw)


def test_a_planted_regression_is_a_regression_on_every_metric():
    surface, control, treatment, judge, analyst = _setup()
    comparison = _create(surface, control, treatment, judge, analyst)
    assert comparison.judge_run is None and comparison.status == "queued"
    done = comparison_refresh(comparison_id=comparison.pk)
    assert done.status == "done", done.message
    results = done.results
    assert results["coverage"] == 1.0 and results["queries"] == Q
    ndcg = results["metrics"]["ndcg@4"]
    assert ndcg["control"] == pytest.approx(1.0) and ndcg["treatment"] < 0.7 and ndcg["delta"] < 0
    assert ndcg["ci_high"] < 0 and ndcg["p_value"] < 0.05 and ndcg["verdict"] == "regression"
    assert results["metrics"]["mean_relevance@4"]["delta"] == pytest.approx(-2.25)
    assert results["metrics"]["precision@4"]["delta"] == pytest.approx(-0.75)
    assert results["verdict"] == "regression" and "Holm" in results["correction"]
    assert done.get_absolute_url() == f"/comparisons/{done.pk}/"


def test_identical_grades_are_neutral_with_a_zero_delta():
    surface, control, treatment, judge, analyst = _setup(grade=lambda v, q, r: 2)
    done = comparison_refresh(comparison_id=_create(surface, control, treatment, judge, analyst).pk)
    for row in done.results["metrics"].values():
        assert row["delta"] == 0 and row["verdict"] == "neutral" and row["p_value"] == 1.0
    assert done.results["verdict"] == "neutral"


def test_a_defect_rate_that_rises_is_a_regression():
    surface, control, treatment, judge, analyst = _setup(
        grade=lambda v, q, r: 2, safety=lambda v, q, r: 0 if v == "treatment" and r > 1 else 1)
    done = comparison_refresh(comparison_id=_create(
        surface, control, treatment, judge, analyst, metrics=["ndcg@k", "defect_rate@k:safety"]).pk)
    row = done.results["metrics"]["defect_rate@4:safety"]
    assert row["delta"] == pytest.approx(0.75) and not row["higher_is_better"] and row["verdict"] == "regression"
    assert done.results["metrics"]["ndcg@4"]["verdict"] == "neutral"


def test_refresh_is_idempotent():
    surface, control, treatment, judge, analyst = _setup()
    comparison = _create(surface, control, treatment, judge, analyst)
    first = comparison_refresh(comparison_id=comparison.pk)
    second = comparison_refresh(comparison_id=comparison.pk)
    assert first.results == second.results and second.finished_at == first.finished_at


def test_coverage_below_the_bound_refuses_a_verdict_with_the_reason():
    skip = {f"q{q}-treatment-d{r}" for q in range(Q) for r in (3, 4)}  # half of treatment's results unjudged
    surface, control, treatment, judge, analyst = _setup(skip=skip)
    done = comparison_refresh(comparison_id=_create(surface, control, treatment, judge, analyst).pk)
    assert done.status == "inconclusive" and "75%" in done.message and "below the 90%" in done.message
    assert done.results["coverage"] == pytest.approx(0.75)
    assert {row["verdict"] for row in done.results["metrics"].values()} == {"inconclusive"}


def test_a_random_query_sample_compares_that_many_queries():
    surface, control, treatment, judge, analyst = _setup()
    done = comparison_refresh(comparison_id=_create(
        surface, control, treatment, judge, analyst, query_sample=QuerySpec(queries=4, seed=3)).pk)
    assert done.results["queries"] == 4 and done.query_spec == {"kind": "random", "queries": 4, "seed": 3}


@pytest.mark.parametrize("change, message", [
    ({"k": 0}, "k must be"),
    ({"alpha": 0.7}, "significance level"),
    ({"metrics": ["ndcg@20"]}, "beyond the comparison's k"),
    ({"metrics": ["recall@4"]}, "Unknown metric"),
    ({"metrics": ["defect_rate@4:toxicity"]}, "no dimension 'toxicity'"),
    ({"metrics": []}, "at least one metric"),
    ({"thresholds": {"precision@2": 0.1}}, "does not compute"),
    ({"thresholds": {"ndcg@k": "much"}}, "must be a number"),
    ({"query_sample": QuerySpec(queries=1)}, "at least 2 queries"),
])
def test_bad_input_is_refused_and_nothing_is_written(change, message):
    surface, control, treatment, judge, analyst = _setup()
    samples, runs = Sample.objects.count(), JudgeRun.objects.count()
    with pytest.raises(ComparisonError, match=message):
        _create(surface, control, treatment, judge, analyst, **change)
    assert Comparison.objects.count() == 0 and Sample.objects.count() == samples and JudgeRun.objects.count() == runs


def test_same_variant_other_surface_and_reviewers_are_refused():
    surface, control, treatment, judge, analyst = _setup()
    with pytest.raises(ComparisonError, match="two different variants"):
        _create(surface, control, control, judge, analyst)
    other = comparison_traffic(slug="other", queries=2, depth=2)
    with pytest.raises(ComparisonError, match="belong to the comparison's surface"):
        _create(other, control, treatment, judge, analyst)
    with pytest.raises(ComparisonError, match="analysts and admins"):
        _create(surface, control, treatment, judge, UserFactory(username="rita", roles=["reviewer"]))
    assert Comparison.objects.count() == 0


def test_a_failed_judge_run_fails_the_comparison_with_its_reason(fault_endpoint, monkeypatch):
    from judges.services import judge_create, judge_run_fail

    surface = comparison_traffic(slug="cmp-fail", queries=3, depth=2)
    analyst = UserFactory(username="cmp-fail-analyst", roles=["analyst"])
    from tests.factories import published_version

    judge = judge_create(name="fault judge", surface=surface, user=analyst, backend="openai", model_name="m",
                         endpoint_name="fault", policy_version=published_version(surface), precedent_k=0)
    monkeypatch.setattr("judges.tasks.judge_run_execute_task.delay", lambda run_id: None)
    monkeypatch.setattr("comparisons.services._queue_refresh", lambda comparison_id, countdown=0: None)
    comparison = comparison_create(surface=surface, control=surface.variants.get(name="control"),
                                   treatment=surface.variants.get(name="treatment"), judge_version=judge, k=2,
                                   user=analyst)
    assert comparison.status == "judging" and comparison.progress == (0, 9)
    assert comparison_refresh(comparison_id=comparison.pk).status == "judging"
    judge_run_fail(run_id=comparison.judge_run_id, reason="the endpoint refused every request")
    failed = comparison_refresh(comparison_id=comparison.pk)
    assert failed.status == "failed" and "the endpoint refused every request" in failed.message
    assert failed.results == {}
