"""sage_stats.ranking / paired / ppi: hand-computed metric cases and the statistics' guarantees."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sage_stats.paired import holm_adjust, paired_compare, verdict
from sage_stats.ppi import labels_needed, ppi_mean
from sage_stats.ranking import MetricNameError, parse_metric, per_query_metrics


def _metrics(rankings, pool, names, relevant_at=2, defect_at=None):
    specs = [parse_metric(n) for n in names]
    return per_query_metrics(rankings, pool, metrics=specs, overall="relevance", relevant_at=relevant_at,
                             defect_at=defect_at or {"relevance": 0, "safety": 0})


def _g(**grades):
    return {doc: {"relevance": g} for doc, g in grades.items()}


# --- metrics against hand computation ------------------------------------------------------------

def test_ndcg_is_trec_evals_linear_gain_over_the_pooled_ideal():
    # DCG = 3/log2(2) + 0 + 2/log2(4) = 4; the ideal of the pool (3, 3, 2, 0) = 3 + 3/log2(3) + 2/2.
    out = _metrics({"q": ["a", "b", "c"]}, {"q": _g(a=3, b=0, c=2, d=3)}, ["ndcg@3"])
    assert out["q"].values["ndcg@3"] == pytest.approx(4 / (3 + 3 / math.log2(3) + 1))


def test_tied_grades_give_the_same_ndcg_in_either_order():
    pool = {"q": _g(a=2, b=2, c=0)}
    first = _metrics({"q": ["a", "b", "c"]}, pool, ["ndcg@3"])["q"].values["ndcg@3"]
    swapped = _metrics({"q": ["b", "a", "c"]}, pool, ["ndcg@3"])["q"].values["ndcg@3"]
    assert first == swapped == pytest.approx(1.0)


def test_the_variants_order_is_measured_not_the_doc_ids():
    # trec_eval breaks score ties by doc id; scores come from rank so "z" at rank 1 stays first.
    out = _metrics({"q": ["z", "a"]}, {"q": _g(z=0, a=3)}, ["ndcg@2"])
    assert out["q"].values["ndcg@2"] == pytest.approx((3 / math.log2(3)) / 3)


def test_missing_grades_count_as_irrelevant_in_ndcg_and_are_left_out_of_means():
    out = _metrics({"q": ["a", "x", "c"]}, {"q": _g(a=3, c=1)}, ["ndcg@3", "mean_relevance@3", "precision@3"])
    values = out["q"].values
    assert values["ndcg@3"] == pytest.approx((3 + 1 / 2) / (3 + 1 / math.log2(3)))
    assert values["mean_relevance@3"] == pytest.approx(2.0)  # (3 + 1) / 2 judged
    assert values["precision@3"] == pytest.approx(1 / 3)
    assert (out["q"].shown, out["q"].judged) == (3, 2)


def test_k_beyond_the_list_divides_precision_by_k_and_means_by_what_was_shown():
    out = _metrics({"q": ["a", "b"]}, {"q": _g(a=3, b=2)}, ["precision@5", "mean_relevance@5", "ndcg@5"])
    values = out["q"].values
    assert values["precision@5"] == pytest.approx(2 / 5)
    assert values["mean_relevance@5"] == pytest.approx(2.5)
    assert values["ndcg@5"] == pytest.approx(1.0)
    assert out["q"].shown == 2


def test_the_relevance_threshold_and_defect_threshold_apply():
    pool = {"q": {"a": {"relevance": 1, "safety": 0}, "b": {"relevance": 2, "safety": 1},
                  "c": {"relevance": 3, "safety": 0}}}
    out = _metrics({"q": ["a", "b", "c"]}, pool, ["precision@3", "defect_rate@3:safety", "defect_rate@2:relevance"],
                   defect_at={"safety": 0, "relevance": 1})
    assert out["q"].values == {"precision@3": pytest.approx(2 / 3), "defect_rate@3:safety": pytest.approx(2 / 3),
                               "defect_rate@2:relevance": pytest.approx(0.5)}


def test_a_query_with_nothing_judged_has_no_value_not_nan():
    out = _metrics({"q": ["a"], "r": ["b"]}, {"r": _g(b=0)}, ["ndcg@3", "precision@3", "mean_relevance@3"])
    assert set(out["q"].values.values()) == {None}
    assert out["r"].values == {"ndcg@3": 0.0, "precision@3": 0.0, "mean_relevance@3": 0.0}


@pytest.mark.parametrize("name", ["ndcg", "ndcg@0", "recall@10", "defect_rate@10", "ndcg@10:safety", "ndcg@10 ", None])
def test_bad_metric_names_are_refused(name):
    if name == "ndcg@10 ":
        assert parse_metric(name).name == "ndcg@10"
        return
    with pytest.raises(MetricNameError):
        parse_metric(name)


# --- paired statistics ---------------------------------------------------------------------------

def test_a_zero_delta_is_neutral_with_p_one():
    c = np.linspace(0.2, 0.9, 20)
    r = paired_compare(c, c)
    assert (r.delta, r.ci_low, r.ci_high, r.p_value) == (0, 0, 0, 1.0)
    assert verdict(delta=r.delta, p_adjusted=r.p_value, threshold=0.02, higher_is_better=True, alpha=0.05) == "neutral"


def test_a_planted_regression_is_caught_and_a_small_one_is_neutral():
    rng = np.random.default_rng(7)
    c = rng.uniform(0.3, 0.9, 30)
    big = paired_compare(c, c - 0.08 + rng.normal(0, 0.03, 30))
    assert big.ci_high < 0 and big.p_value < 0.01
    assert verdict(delta=big.delta, p_adjusted=big.p_value, threshold=-0.02, higher_is_better=True,
                   alpha=0.05) == "regression"
    # Significant but smaller than the threshold that matters: neutral.
    assert verdict(delta=-0.01, p_adjusted=0.001, threshold=0.02, higher_is_better=True, alpha=0.05) == "neutral"
    # A defect rate that rises is the regression.
    assert verdict(delta=0.05, p_adjusted=0.001, threshold=0.02, higher_is_better=False, alpha=0.05) == "regression"
    assert verdict(delta=0.05, p_adjusted=0.001, threshold=0.02, higher_is_better=True, alpha=0.05) == "improvement"


def test_the_ci_covers_a_null_delta_about_95_percent_of_the_time():
    covered = 0
    runs = 120
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        c = rng.uniform(0, 1, 30)
        t = c + rng.normal(0, 0.1, 30)  # true mean delta 0
        r = paired_compare(c, t, n_resamples=999, seed=seed)
        covered += r.ci_low <= 0 <= r.ci_high
    assert 0.88 <= covered / runs <= 0.99, covered / runs


def test_the_mde_shrinks_with_more_queries():
    rng = np.random.default_rng(1)
    small = paired_compare(np.zeros(10), rng.normal(0, 0.1, 10))
    large = paired_compare(np.zeros(200), rng.normal(0, 0.1, 200))
    assert large.mde < small.mde / 3


def test_holm_adjusts_in_step_down_order():
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjust([]) == []


def test_fewer_than_two_queries_is_refused():
    with pytest.raises(ValueError, match="at least 2"):
        paired_compare([0.5], [0.4])


# --- PPI -------------------------------------------------------------------------------------------

def test_ppi_with_a_perfect_judge_is_the_classical_estimate_of_every_query():
    rng = np.random.default_rng(3)
    truth = rng.normal(0.05, 0.2, 300)
    labelled, rest = truth[:30], truth[30:]
    r = ppi_mean(labelled, labelled, rest)
    # PPI++ weighs the judge's predictions by lam = cov / ((1 + n/N) var): n/(n+N) of the way to the
    # humans-only mean; with perfect predictions it is the mean of all true deltas up to lam's estimate.
    assert r.estimate == pytest.approx(truth.mean(), abs=0.003)
    assert r.width < (r.classical_ci_high - r.classical_ci_low) / 2  # the judge's 270 predictions count


def test_ppi_corrects_a_biased_judge_where_the_judge_alone_is_off():
    rng = np.random.default_rng(4)
    truth = rng.normal(0.0, 0.1, 400)
    judge = truth + 0.08 + rng.normal(0, 0.02, 400)  # overstates every delta by 0.08
    r = ppi_mean(truth[:40], judge[:40], judge[40:])
    assert judge.mean() > 0.07  # the judge alone says "improvement"
    assert r.ci_low <= truth.mean() <= r.ci_high and abs(r.estimate - truth.mean()) < 0.02


def test_a_useless_judge_leaves_the_humans_estimate():
    rng = np.random.default_rng(5)
    y = rng.normal(0, 0.1, 20)
    r = ppi_mean(y, np.zeros(20), np.zeros(100))
    assert r.estimate == pytest.approx(y.mean()) and r.ci_low == pytest.approx(r.classical_ci_low)


def test_labels_needed_grows_as_the_target_narrows():
    rng = np.random.default_rng(6)
    y = rng.normal(0, 0.2, 20)
    yhat = y + rng.normal(0, 0.1, 20)
    wide = labels_needed(y, yhat, target_width=0.3, total=2000)
    narrow = labels_needed(y, yhat, target_width=0.03, total=2000)
    assert wide == 20 and narrow is not None and narrow > 100
    assert labels_needed(y, yhat, target_width=0.001, total=2000) is None
