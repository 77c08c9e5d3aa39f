"""Agreement between labellers: pure functions over label arrays, no Django models.

Computed with scikit-learn and the `krippendorff` package rather than by hand. A statistic that is
undefined for the data (fewer than two items, a single class, no pairable values) comes back as
None with a reason, never NaN and never an exception, so pages can show "n/a — why".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
