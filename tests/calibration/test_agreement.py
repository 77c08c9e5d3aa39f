"""The agreement service on hand-checkable cases, and its closed forms against the libraries."""

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from sage_stats import bootstrap_ci, dimension_agreement, statistics_from_confusion

VALUES = [0, 1, 2, 3]


def agree(a, b, groups=None, **kw):
    a, b = np.array(a), np.array(b)
    groups = np.arange(len(a)) // 2 if groups is None else np.array(groups)
    return dimension_agreement(dimension="relevance", a=a, b=b, groups=groups, values=VALUES, **kw)


def test_perfect_agreement_is_one_everywhere():
    r = agree([0, 1, 2, 3, 0, 1, 2, 3], [0, 1, 2, 3, 0, 1, 2, 3])
    assert r.estimates == {"exact": 1.0, "kappa": 1.0, "kappa_linear": 1.0, "kappa_quadratic": 1.0, "alpha": 1.0}
    assert r.confusion == [[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 2]]


def test_reversed_labels_disagree_below_chance():
    r = agree([0, 1, 2, 3] * 3, [3, 2, 1, 0] * 3)
    assert r.estimates["exact"] == 0.0
    assert r.estimates["kappa_quadratic"] == pytest.approx(-1.0)
    assert r.estimates["alpha"] < 0


def test_independent_labels_are_near_chance():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 4, 4000), rng.integers(0, 4, 4000)
    r = agree(a, b, groups=np.arange(4000) // 20)
    assert abs(r.estimates["kappa"]) < 0.05 and abs(r.estimates["alpha"]) < 0.05
    low, high = r.ci["kappa"]
    assert low < 0 < high


def test_one_class_only_is_undefined_with_a_reason():
    r = agree([2, 2, 2, 2], [2, 2, 2, 2])
    assert r.estimates["exact"] == 1.0 and r.estimates["kappa"] is None
    assert "same class" in r.reason


def test_no_shared_items_gives_n_zero():
    r = agree([], [])
    assert r.n == 0 and r.reason == "no items labelled by both" and r.estimates["kappa"] is None


def test_labels_outside_the_scale_are_refused():
    with pytest.raises(ValueError, match="outside the scale"):
        agree([0, 1, 5, 2], [0, 1, 2, 2])


@pytest.mark.parametrize("seed", range(5))
def test_closed_forms_match_scikit_learn_and_krippendorff(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 4, 300)
    b = np.clip(a + rng.integers(-1, 2, 300), 0, 3)
    cm = np.zeros((4, 4))
    np.add.at(cm, (a, b), 1)
    stats = statistics_from_confusion(cm)
    assert stats["kappa"] == pytest.approx(cohen_kappa_score(a, b, labels=VALUES), abs=1e-9)
    assert stats["kappa_linear"] == pytest.approx(cohen_kappa_score(a, b, labels=VALUES, weights="linear"), abs=1e-9)
    assert stats["kappa_quadratic"] == pytest.approx(cohen_kappa_score(a, b, labels=VALUES, weights="quadratic"), abs=1e-9)
    expected_alpha = krippendorff.alpha(reliability_data=np.vstack([a, b]).astype(float), value_domain=VALUES,
                                        level_of_measurement="ordinal")
    assert stats["alpha"] == pytest.approx(expected_alpha, abs=1e-9)


def test_the_bootstrap_resamples_whole_queries():
    # Two queries that disagree in opposite directions: resampling queries (not items) must widen the interval.
    a = np.array([0] * 50 + [3] * 50)
    b = np.array([0] * 50 + [0] * 50)
    by_query = agree(a, b, groups=[0] * 50 + [1] * 50)
    by_item = agree(a, b, groups=np.arange(100))
    width = lambda r: r.ci["exact"][1] - r.ci["exact"][0]  # noqa: E731
    assert width(by_query) > width(by_item)


def test_the_bootstrap_is_reproducible_for_a_seed():
    per_group = np.random.default_rng(0).integers(0, 5, (30, 4, 4)).astype(float)
    assert bootstrap_ci(per_group, seed=3) == bootstrap_ci(per_group, seed=3)
    assert bootstrap_ci(per_group[:1])[0] == {s: None for s in ("exact", "kappa", "kappa_linear", "kappa_quadratic", "alpha")}
