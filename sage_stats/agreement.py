"""Agreement between two labellers on the items both labelled, and Krippendorff's alpha over many.

Point estimates come from the libraries: scikit-learn's `cohen_kappa_score` (unweighted, linear,
quadratic) and `confusion_matrix`, `krippendorff.alpha` (ordinal). A statistic that is undefined for
the data (fewer than two items, a single class, no pairable values) comes back as None with a reason,
never NaN and never an exception, so pages can show "n/a — why".

Confidence intervals resample whole queries (items of one query are not independent) with
`scipy.stats.bootstrap`, BCa method: with few queries (a TREC track has 8-50) the bootstrap
distribution of a bounded statistic like kappa is biased and skewed, which the plain percentile
interval ignores and BCa corrects for (Efron 1987; coverage error O(1/n) against O(1/sqrt(n))).
Neither can show spread that a handful of queries never exhibited, so every interval also says how
many queries it rests on, with a warning below MIN_QUERIES_FOR_CI.

Each query's confusion matrix is computed once and a resample is a re-weighting of those matrices,
so 1,000 resamples cost 1,000 small matrix sums whatever the number of items; the statistics of a
resampled confusion matrix use the closed forms that the libraries compute (tests check them against
the libraries to 1e-9, and the intervals against scipy's bootstrap over per-item labels).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else float(value)


def pairwise_agreement(a: Sequence[int], b: Sequence[int], values: Sequence[int]) -> dict[str, Any]:
    """Two labellers' labels of the same items, in the same order, on the ordinal scale `values`.

    Returns n, exact agreement and Cohen's kappa unweighted, linear- and quadratic-weighted; each is
    None with `reason` set when undefined.
    """
    from sklearn.metrics import cohen_kappa_score

    if len(a) != len(b):
        raise ValueError(f"the two label lists differ in length ({len(a)} vs {len(b)})")
    result: dict[str, Any] = {"n": len(a), "exact": None, "kappa": None, "kappa_linear": None,
                              "kappa_quadratic": None, "reason": None}
    if len(a) == 0:
        result["reason"] = "no items labelled by both"
        return result
    x, y = np.asarray(a), np.asarray(b)
    result["exact"] = float(np.mean(x == y))
    if len(a) < 2:
        result["reason"] = "kappa needs at least two items"
        return result
    if len(set(x.tolist()) | set(y.tolist())) < 2:
        result["reason"] = "every label is the same class, so chance agreement is total and kappa is undefined"
        return result
    labels = list(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        result["kappa"] = _finite(cohen_kappa_score(x, y, labels=labels))
        result["kappa_linear"] = _finite(cohen_kappa_score(x, y, labels=labels, weights="linear"))
        result["kappa_quadratic"] = _finite(cohen_kappa_score(x, y, labels=labels, weights="quadratic"))
    if result["kappa"] is None:
        result["reason"] = "kappa is undefined for these labels"
    return result


def krippendorff_alpha(reliability_matrix: Any, values: Sequence[int], level: str = "ordinal") -> dict[str, Any]:
    """Krippendorff's alpha over a labellers × items matrix (NaN = not labelled).

    Returns {"alpha", "n_items" (items with 2+ labels), "n_pairable" (values in those items), "reason"}.
    """
    import krippendorff

    matrix = np.asarray(reliability_matrix, dtype=float)
    if matrix.ndim != 2:
        raise ValueError("the reliability matrix must be 2-D: labellers × items")
    counts = np.sum(~np.isnan(matrix), axis=0) if matrix.size else np.array([])
    pairable = counts >= 2
    result: dict[str, Any] = {"alpha": None, "n_items": int(np.sum(pairable)),
                              "n_pairable": int(np.sum(counts[pairable])), "reason": None}
    if result["n_items"] < 2:
        result["reason"] = "alpha needs at least two items labelled by two or more labellers"
        return result
    observed = matrix[:, pairable]
    distinct = set(observed[~np.isnan(observed)].tolist())
    if len(distinct) < 2:
        result["reason"] = "every label is the same class, so there is no variation to agree on"
        return result
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = krippendorff.alpha(reliability_data=matrix, value_domain=[float(v) for v in values],
                                   level_of_measurement=level)
    result["alpha"] = _finite(alpha)
    if result["alpha"] is None:
        result["reason"] = "alpha is undefined for these labels"
    return result


STATISTICS = ("exact", "kappa", "kappa_linear", "kappa_quadratic", "alpha")
# Below this many queries an interval is shown with a warning: a cluster bootstrap learns the spread
# between queries from the queries themselves, and with a handful it cannot see the tails.
MIN_QUERIES_FOR_CI = 10
# BCa needs a leave-one-query-out jackknife (work ~ queries²); past this many queries the percentile
# interval is accurate anyway (its error shrinks like 1/queries) and the jackknife would dominate.
BCA_MAX_QUERIES = 1_000


def few_queries_warning(n_queries: int) -> str | None:
    """The caution to show beside an interval that rests on too few queries (None when enough)."""
    if 0 < n_queries < MIN_QUERIES_FOR_CI:
        return (f"only {n_queries} quer{'y' if n_queries == 1 else 'ies'}: the interval resamples queries, "
                f"so it is rough below {MIN_QUERIES_FOR_CI}")
    return None


@dataclass
class DimensionAgreement:
    dimension: str
    values: list[int]
    n: int
    n_queries: int
    estimates: dict[str, float | None]
    ci: dict[str, tuple[float, float] | None]
    confusion: list[list[int]]  # rows: labeller A's value, columns: labeller B's value
    reason: str | None = None
    ci_method: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def warning(self) -> str | None:
        return few_queries_warning(self.n_queries)

    def as_dict(self) -> dict[str, Any]:
        return {"dimension": self.dimension, "values": self.values, "n": self.n, "n_queries": self.n_queries,
                "estimates": self.estimates, "ci": {k: list(v) if v else None for k, v in self.ci.items()},
                "confusion": self.confusion, "reason": self.reason, "ci_method": self.ci_method}


def _weights(k: int, kind: str | None) -> np.ndarray:
    idx = np.arange(k)
    if kind is None:
        return (idx[:, None] != idx[None, :]).astype(float)
    diff = np.abs(idx[:, None] - idx[None, :]).astype(float)
    return diff if kind == "linear" else diff**2


def _kappa_from_confusion(cm: np.ndarray, kind: str | None) -> np.ndarray:
    """sklearn's cohen_kappa_score formula on (..., k, k) confusion matrices."""
    k = cm.shape[-1]
    w = _weights(k, kind)
    total = cm.sum(axis=(-1, -2), keepdims=True)
    expected = cm.sum(axis=-1, keepdims=True) * cm.sum(axis=-2, keepdims=True) / np.where(total == 0, 1, total)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1 - (cm * w).sum(axis=(-1, -2)) / (expected * w).sum(axis=(-1, -2))


def _ordinal_delta(marginals: np.ndarray) -> np.ndarray:
    """Krippendorff's ordinal distance from the pairable-value marginals n_c (..., k)."""
    k = marginals.shape[-1]
    cum = np.cumsum(marginals, axis=-1)
    delta = np.zeros(marginals.shape[:-1] + (k, k))
    for c in range(k):
        for d in range(k):
            lo, hi = min(c, d), max(c, d)
            s = cum[..., hi] - (cum[..., lo - 1] if lo > 0 else 0)
            delta[..., c, d] = (s - (marginals[..., c] + marginals[..., d]) / 2) ** 2
    return delta


def _alpha_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Ordinal alpha for two coders with no missing values: the coincidence matrix is cm + cmᵀ."""
    o = cm + np.swapaxes(cm, -1, -2)
    n_c = o.sum(axis=-1)
    n = n_c.sum(axis=-1)
    delta = _ordinal_delta(n_c)
    d_o = (o * delta).sum(axis=(-1, -2))
    d_e = (n_c[..., :, None] * n_c[..., None, :] * delta).sum(axis=(-1, -2)) / np.where(n > 1, n - 1, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1 - d_o / d_e


def statistics_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    total = cm.sum(axis=(-1, -2))
    with np.errstate(divide="ignore", invalid="ignore"):
        exact = np.trace(cm, axis1=-2, axis2=-1) / total
    return {"exact": exact, "kappa": _kappa_from_confusion(cm, None),
            "kappa_linear": _kappa_from_confusion(cm, "linear"),
            "kappa_quadratic": _kappa_from_confusion(cm, "quadratic"), "alpha": _alpha_from_confusion(cm)}


def confusion_by_group(a: np.ndarray, b: np.ndarray, groups: np.ndarray, values: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(group ids, (n_groups, k, k) confusion matrices) in one vectorised pass."""
    k = len(values)
    scale = np.asarray(values)
    ai, bi = np.searchsorted(scale, a), np.searchsorted(scale, b)
    if not (np.array_equal(scale[np.minimum(ai, k - 1)], a) and np.array_equal(scale[np.minimum(bi, k - 1)], b)):
        raise ValueError(f"labels outside the scale {values}")
    group_ids, gi = np.unique(groups, return_inverse=True)
    flat = np.bincount(gi * k * k + ai * k + bi, minlength=len(group_ids) * k * k)
    return group_ids, flat.reshape(len(group_ids), k, k).astype(float)


def _resampled_statistics(per_group: np.ndarray):
    """The statistics of resamples of whole groups, as `scipy.stats.bootstrap` wants them: it passes
    arrays of group indices (..., m) and gets (len(STATISTICS), ...) back."""
    g = per_group.shape[0]

    def statistic(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        idx = np.moveaxis(np.asarray(idx, dtype=np.int64), axis, -1)
        lead = idx.shape[:-1]
        flat = idx.reshape(-1, idx.shape[-1])
        rows = flat.shape[0]
        # How often each group was drawn in each resample: one bincount, then one matrix product.
        counts = np.bincount((np.arange(rows)[:, None] * g + flat).ravel(), minlength=rows * g).reshape(rows, g)
        stats = statistics_from_confusion(np.einsum("rg,gij->rij", counts.astype(float), per_group))
        return np.stack([stats[name] for name in STATISTICS]).reshape((len(STATISTICS), *lead))

    return statistic


def _percentile(samples: np.ndarray, level: float) -> tuple[float, float] | None:
    finite = samples[np.isfinite(samples)]
    if finite.size < 10:
        return None
    tail = (1 - level) / 2 * 100
    return float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))


def bootstrap_ci(per_group: np.ndarray, *, n_resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[dict[str, tuple[float, float] | None], str]:
    """Intervals from resampling whole groups (queries) with replacement: ({statistic: (low, high) or
    None}, how they were computed).

    BCa where it is defined; a statistic for which BCa is not (some resample left it undefined, e.g.
    kappa when a resample holds a single class, or every resample gave the same value) falls back to
    the percentile interval of its defined resamples, and the method string says so.
    """
    from scipy.stats import bootstrap

    g = per_group.shape[0]
    if g < 2:
        return {name: None for name in STATISTICS}, ""
    statistic = _resampled_statistics(per_group)
    method = "BCa" if g <= BCA_MAX_QUERIES else "percentile"
    # Bounds the (resamples × queries) count array of one batch to ~32 MB.
    batch = max(1, min(n_resamples, 4_000_000 // g))
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")  # scipy warns of degenerate distributions; handled below
        result = bootstrap((np.arange(g),), statistic, n_resamples=n_resamples, batch=batch, vectorized=True,
                           confidence_level=level, method=method, rng=np.random.default_rng(seed))
    out: dict[str, tuple[float, float] | None] = {}
    fallback = []
    for i, name in enumerate(STATISTICS):
        low, high = float(result.confidence_interval.low[i]), float(result.confidence_interval.high[i])
        if method == "BCa" and math.isfinite(low) and math.isfinite(high):
            out[name] = (low, high)
            continue
        out[name] = _percentile(result.bootstrap_distribution[i], level)
        if method == "BCa" and out[name] is not None:
            fallback.append(name)
    label = f"{method} over {g} queries"
    if fallback:
        label += f"; percentile for {', '.join(fallback)} (BCa undefined there)"
    return out, label


def dimension_agreement(*, dimension: str, a: np.ndarray, b: np.ndarray, groups: np.ndarray, values: list[int],
                        n_resamples: int = 1000, seed: int = 0) -> DimensionAgreement:
    """Agreement of labellers A and B on paired labels `a[i]`, `b[i]` of item i in query `groups[i]`."""
    from sklearn.metrics import confusion_matrix

    a, b, groups = np.asarray(a), np.asarray(b), np.asarray(groups)
    outside = set(np.unique(np.concatenate([a, b])).tolist()) - set(values) if a.size else set()
    if outside:
        raise ValueError(f"labels outside the scale {values}: {sorted(outside)}")
    if a.size == 0:
        return DimensionAgreement(dimension=dimension, values=values, n=0, n_queries=0,
                                  estimates={s: None for s in STATISTICS}, ci={s: None for s in STATISTICS},
                                  confusion=[[0] * len(values) for _ in values], reason="no items labelled by both")
    pair = pairwise_agreement(a.astype(int), b.astype(int), values)
    alpha = krippendorff_alpha(np.vstack([a, b]).astype(float), values)
    estimates = {"exact": pair["exact"], "kappa": pair["kappa"], "kappa_linear": pair["kappa_linear"],
                 "kappa_quadratic": pair["kappa_quadratic"], "alpha": alpha["alpha"]}
    cm = confusion_matrix(a.astype(int), b.astype(int), labels=values)
    _, per_group = confusion_by_group(a.astype(int), b.astype(int), groups, values)
    ci, method = ({s: None for s in STATISTICS}, "")
    if pair["kappa"] is not None:
        ci, method = bootstrap_ci(per_group, n_resamples=n_resamples, seed=seed)
    return DimensionAgreement(dimension=dimension, values=values, n=int(a.size), n_queries=int(per_group.shape[0]),
                              estimates=estimates, ci=ci, confusion=cm.tolist(), reason=pair["reason"] or alpha["reason"],
                              ci_method=method)
