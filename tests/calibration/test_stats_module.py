"""sage_stats: the one home of the agreement math — Django-free, imported by every app, and its
query-cluster BCa intervals equal scipy's own bootstrap over per-item labels."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import bootstrap
from sklearn.metrics import cohen_kappa_score

from sage_stats import MIN_QUERIES_FOR_CI, dimension_agreement
from sage_stats.agreement import few_queries_warning

VALUES = [0, 1, 2, 3]


def test_the_stats_package_imports_no_django():
    code = ("import sys, sage_stats, sage_stats.agreement, sage_stats.consensus; "
            "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith(('django.', 'sage.', 'calibration', "
            "'review', 'judges'))); print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_old_copies_are_gone_and_callers_import_the_one_module():
    assert importlib.util.find_spec("calibration.metrics") is None
    assert importlib.util.find_spec("calibration.agreement") is None
    import calibration.selectors
    import review.selectors
    import sage_stats

    assert review.selectors.krippendorff_alpha is sage_stats.krippendorff_alpha
    assert calibration.selectors.dimension_agreement is sage_stats.dimension_agreement


def clustered(n_queries: int, per_query: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    # Queries differ in how well the labellers agree, so the clusters matter.
    noise = rng.uniform(0.1, 0.9, n_queries)
    a, b, groups = [], [], []
    for q in range(n_queries):
        truth = rng.integers(0, 4, per_query)
        flip = rng.random(per_query) < noise[q]
        other = np.where(flip, np.clip(truth + rng.choice([-2, -1, 1, 2], per_query), 0, 3), truth)
        a += truth.tolist()
        b += other.tolist()
        groups += [q] * per_query
    return np.array(a), np.array(b), np.array(groups)


def test_intervals_are_scipys_bca_over_whole_queries():
    a, b, groups = clustered(8)
    ours = dimension_agreement(dimension="relevance", a=a, b=b, groups=groups, values=VALUES, n_resamples=400, seed=5)
    assert ours.n_queries == 8 and ours.ci_method.startswith("BCa over 8 queries")

    # The same interval, the slow way: scipy resamples query ids, scikit-learn scores the per-item labels.
    queries = np.unique(groups)

    def kappa(q_idx, axis=-1):
        q_idx = np.atleast_2d(np.moveaxis(q_idx, axis, -1))
        out = []
        for row in q_idx:
            picked = np.concatenate([np.flatnonzero(groups == queries[int(q)]) for q in row])
            out.append(cohen_kappa_score(a[picked], b[picked], labels=VALUES))
        return np.array(out).reshape(q_idx.shape[:-1]) if q_idx.shape[0] > 1 else np.float64(out[0])

    slow = bootstrap((np.arange(len(queries)),), kappa, n_resamples=400, method="BCa", vectorized=True,
                     rng=np.random.default_rng(5))
    assert ours.ci["kappa"] == pytest.approx((slow.confidence_interval.low, slow.confidence_interval.high), abs=1e-9)


def test_the_interval_holds_the_estimate_and_warns_with_few_queries():
    a, b, groups = clustered(8, seed=3)
    r = dimension_agreement(dimension="relevance", a=a, b=b, groups=groups, values=VALUES, n_resamples=2000)
    low, high = r.ci["kappa"]
    assert low < r.estimates["kappa"] < high
    assert r.warning and "8 queries" in r.warning


def test_few_queries_are_flagged_and_enough_are_not():
    assert few_queries_warning(MIN_QUERIES_FOR_CI - 1)
    assert few_queries_warning(MIN_QUERIES_FOR_CI) is None
    assert few_queries_warning(0) is None  # nothing to interval, nothing to warn about
    a, b, groups = clustered(12)
    assert dimension_agreement(dimension="r", a=a, b=b, groups=groups, values=VALUES, n_resamples=200).warning is None


def test_an_interval_that_bca_cannot_give_falls_back_and_says_so():
    # Two queries, each all one class: most resamples hold a single class, where kappa is undefined.
    a = np.array([0] * 6 + [3] * 6 + [1, 2])
    b = np.array([0] * 6 + [3] * 6 + [2, 1])
    groups = np.array([0] * 6 + [1] * 6 + [2, 2])
    r = dimension_agreement(dimension="r", a=a, b=b, groups=groups, values=VALUES, n_resamples=300)
    for name, ci in r.ci.items():
        assert ci is None or all(np.isfinite(ci)), name
    assert r.ci_method.startswith("BCa over 3 queries")
