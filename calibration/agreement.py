"""Agreement between two labellers on the items both labelled, per rubric dimension.

Point estimates come from the libraries: scikit-learn's `cohen_kappa_score` (unweighted, linear,
quadratic), `krippendorff.alpha` (ordinal) and `confusion_matrix`. Confidence intervals come from a
bootstrap that resamples whole queries (items of one query are not independent): each query's
confusion matrix is computed once, and each resample is a multinomial re-weighting of those
matrices, so 1,000 resamples cost 1,000 small matrix sums whatever the number of items. The
statistics of a resampled confusion matrix use the closed forms that the libraries compute (tests
check them against the libraries to 1e-9) — the libraries themselves want per-item arrays, which
would make the bootstrap a million-row loop per resample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .metrics import krippendorff_alpha, pairwise_agreement

STATISTICS = ("exact", "kappa", "kappa_linear", "kappa_quadratic", "alpha")


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
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"dimension": self.dimension, "values": self.values, "n": self.n, "n_queries": self.n_queries,
                "estimates": self.estimates, "ci": {k: list(v) if v else None for k, v in self.ci.items()},
                "confusion": self.confusion, "reason": self.reason}


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


def _confusion_by_group(a: np.ndarray, b: np.ndarray, groups: np.ndarray, values: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(group ids, (n_groups, k, k) confusion matrices) in one vectorised pass."""
    k = len(values)
    scale = np.asarray(values)
    ai, bi = np.searchsorted(scale, a), np.searchsorted(scale, b)
    if not (np.array_equal(scale[np.minimum(ai, k - 1)], a) and np.array_equal(scale[np.minimum(bi, k - 1)], b)):
        raise ValueError(f"labels outside the scale {values}")
    group_ids, gi = np.unique(groups, return_inverse=True)
    flat = np.bincount(gi * k * k + ai * k + bi, minlength=len(group_ids) * k * k)
    return group_ids, flat.reshape(len(group_ids), k, k).astype(float)


def bootstrap_ci(per_group: np.ndarray, *, n_resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> dict[str, tuple[float, float] | None]:
    """Percentile intervals from resampling whole groups (queries) with replacement."""
    g = per_group.shape[0]
    if g < 2:
        return {name: None for name in STATISTICS}
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(g, np.full(g, 1 / g), size=n_resamples).astype(float)  # (R, g)
    resampled = np.einsum("rg,gij->rij", counts, per_group)
    stats = statistics_from_confusion(resampled)
    tail = (1 - level) / 2 * 100
    out: dict[str, tuple[float, float] | None] = {}
    for name, samples in stats.items():
        finite = samples[np.isfinite(samples)]
        out[name] = (float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))) if finite.size >= 10 else None
    return out


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
    _, per_group = _confusion_by_group(a.astype(int), b.astype(int), groups, values)
    ci = bootstrap_ci(per_group, n_resamples=n_resamples, seed=seed) if pair["kappa"] is not None else {s: None for s in STATISTICS}
    return DimensionAgreement(dimension=dimension, values=values, n=int(a.size), n_queries=int(per_group.shape[0]),
                              estimates=estimates, ci=ci, confusion=cm.tolist(), reason=pair["reason"] or alpha["reason"])
