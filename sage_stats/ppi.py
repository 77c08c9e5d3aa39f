"""Prediction-powered inference (PPI++) for a paired per-query delta, with `ppi_py`.

Humans labelled a random slice of the comparison's queries (every compared result of those queries):
on them the per-query delta is known twice, from the humans' grades (`y`) and from the judge's
(`yhat`); on the other queries only the judge's delta exists (`yhat_unlabelled`). PPI++
(Angelopoulos, Duchi, Zrnic 2023) estimates the mean true delta as
    lam * mean(yhat_unlabelled) + mean(y - lam * yhat)
with lam tuned to minimise variance: the judge's bias is corrected by the humans' slice, and the
judge's many predictions shrink the interval as far as they agree with the humans. With a perfect
judge (y == yhat) the estimate is the mean of all true deltas, the classical estimate had every query
been labelled; with a useless judge lam → 0 and it is the humans-only estimate.

`labels_needed`: how many labelled queries give an interval of a target width at the observed
judge–human correlation, from PPI++'s variance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

MIN_LABELLED = 3


@dataclass(frozen=True)
class PPIResult:
    estimate: float
    ci_low: float
    ci_high: float
    n_labelled: int
    n_unlabelled: int
    classical_estimate: float  # humans only, on the labelled queries
    classical_ci_low: float
    classical_ci_high: float

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def width(self) -> float:
        return self.ci_high - self.ci_low


def ppi_mean(y: Sequence[float], yhat: Sequence[float], yhat_unlabelled: Sequence[float], *,
             alpha: float = 0.05) -> PPIResult:
    from ppi_py import classical_mean_ci, ppi_mean_ci, ppi_mean_pointestimate

    Y, Yhat, Yu = (np.asarray(a, dtype=float) for a in (y, yhat, yhat_unlabelled))
    if len(Y) != len(Yhat):
        raise ValueError("y and yhat must be paired (same queries, same order)")
    if len(Y) < MIN_LABELLED:
        raise ValueError(f"PPI needs at least {MIN_LABELLED} human-labelled queries, got {len(Y)}")
    if len(Yu) == 0:
        # Every query labelled: nothing for the judge to add; PPI is the classical estimate.
        low, high = classical_mean_ci(Y, alpha=alpha)
        est = float(Y.mean())
        return PPIResult(est, float(low), float(high), len(Y), 0, est, float(low), float(high))
    if np.var(Yhat) == 0 and np.var(Yu) == 0:
        lam = 0.0  # the judge's deltas carry no information; PPI++'s tuning would divide by zero
    else:
        lam = None
    est = float(np.ravel(ppi_mean_pointestimate(Y, Yhat, Yu, lam=lam))[0])
    low, high = ppi_mean_ci(Y, Yhat, Yu, alpha=alpha, lam=lam)
    c_low, c_high = classical_mean_ci(Y, alpha=alpha)
    return PPIResult(est, float(np.ravel(low)[0]), float(np.ravel(high)[0]), len(Y), len(Yu), float(Y.mean()),
                     float(np.ravel(c_low)[0]), float(np.ravel(c_high)[0]))


def labels_needed(y: Sequence[float], yhat: Sequence[float], *, target_width: float, total: int,
                  alpha: float = 0.05) -> int | None:
    """Labelled queries (in all, not extra) for a PPI++ interval of `target_width` when the judge
    covers all `total` queries; None when even labelling every query would not reach it.

    From PPI++'s asymptotic variance at the optimal lam with n labelled and N = total - n judged-only
    queries: (var(y) / n) * (1 - rho^2 * N / (n + N)), rho the judge–human correlation of the per-query
    deltas measured on the slice so far. (ppi_py's own `ppi_mean_power` plans for an unlimited supply of
    judge-only data; a comparison has a fixed number of queries, so the plan here is over that number.)
    """
    from scipy.stats import norm

    Y, Yhat = np.asarray(y, dtype=float), np.asarray(yhat, dtype=float)
    if len(Y) < 2 or target_width <= 0:
        return None
    var_y = float(np.var(Y, ddof=1))
    if var_y == 0:
        return len(Y)
    rho = float(np.corrcoef(Y, Yhat)[0, 1]) if np.std(Yhat) > 0 else 0.0
    rho2 = 0.0 if math.isnan(rho) else rho * rho
    z = norm.ppf(1 - alpha / 2)
    for n in range(len(Y), total + 1):
        big_n = total - n
        var = var_y / n * (1 - rho2 * big_n / (n + big_n))
        if 2 * z * math.sqrt(max(var, 0.0)) <= target_width:
            return n
    return None
