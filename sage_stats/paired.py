"""Paired comparison of two variants over the same queries: delta, CI, p-value, MDE and a verdict.

The unit is the query: each query gives one value per variant, and the delta of a query is
treatment minus control. The 95% CI resamples queries with `scipy.stats.bootstrap(paired=True)`
(BCa; percentile when every delta is equal, where BCa is undefined), the p-value is a paired
permutation test (`scipy.stats.permutation_test`, permutation_type="samples": random sign flips of
the per-query deltas, exact when 2^n is small). The minimum detectable effect is the true mean delta
a paired t-test at this alpha would detect with 80% power given the deltas' spread and number of
queries. When several metrics decide one verdict, their p-values are adjusted by Holm's step-down
method (`statsmodels`), which holds the family-wise error rate at alpha without assuming independence.

A verdict per metric: "regression" when the adjusted p-value is below alpha and the delta is at least
as bad as the metric's threshold (a practical size, e.g. -0.02 nDCG), "improvement" symmetrically,
"neutral" otherwise (no significant difference, or one too small to matter).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

MIN_QUERIES = 2
MDE_POWER = 0.8


@dataclass(frozen=True)
class PairedResult:
    n: int
    control: float
    treatment: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    mde: float | None  # None with fewer than MIN_QUERIES queries or no spread

    def as_dict(self) -> dict:
        return asdict(self)


def _mean_delta(control: np.ndarray, treatment: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(treatment - control, axis=axis)


def minimum_detectable_effect(deltas: np.ndarray, *, alpha: float = 0.05, power: float = MDE_POWER) -> float | None:
    from scipy.stats import t

    n = len(deltas)
    if n < MIN_QUERIES:
        return None
    sd = float(np.std(deltas, ddof=1))
    return float((t.ppf(1 - alpha / 2, n - 1) + t.ppf(power, n - 1)) * sd / math.sqrt(n))


def paired_compare(control: Sequence[float], treatment: Sequence[float], *, alpha: float = 0.05,
                   n_resamples: int = 2000, seed: int = 0) -> PairedResult:
    """Control and treatment values of the same queries, in the same order."""
    from scipy.stats import bootstrap, permutation_test

    c, t = np.asarray(control, dtype=float), np.asarray(treatment, dtype=float)
    if c.shape != t.shape or c.ndim != 1:
        raise ValueError("control and treatment must be equal-length 1-d sequences")
    n = len(c)
    if n < MIN_QUERIES:
        raise ValueError(f"a paired comparison needs at least {MIN_QUERIES} queries, got {n}")
    deltas = t - c
    delta = float(deltas.mean())
    if np.all(deltas == deltas[0]):
        # No spread: every resample gives the same mean, so the interval is the point (BCa is undefined).
        low = high = delta
    else:
        rng = np.random.default_rng(seed)
        res = bootstrap((c, t), _mean_delta, paired=True, vectorized=True, n_resamples=n_resamples,
                        confidence_level=1 - alpha, method="BCa", random_state=rng)
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isnan(low) or math.isnan(high):
            res = bootstrap((c, t), _mean_delta, paired=True, vectorized=True, n_resamples=n_resamples,
                            confidence_level=1 - alpha, method="percentile", random_state=rng)
            low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if np.all(deltas == 0):
        p = 1.0
    else:
        perm = permutation_test((c, t), _mean_delta, permutation_type="samples", vectorized=True,
                                n_resamples=9999, alternative="two-sided", random_state=np.random.default_rng(seed))
        p = float(perm.pvalue)
    return PairedResult(n=n, control=float(c.mean()), treatment=float(t.mean()), delta=delta, ci_low=low,
                        ci_high=high, p_value=min(1.0, p), mde=minimum_detectable_effect(deltas, alpha=alpha))


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error rate), in the input order."""
    if len(p_values) == 0:
        return []
    from statsmodels.stats.multitest import multipletests

    return [float(p) for p in multipletests(list(p_values), method="holm")[1]]


def verdict(*, delta: float, p_adjusted: float, threshold: float, higher_is_better: bool, alpha: float) -> str:
    """"regression" | "neutral" | "improvement". `threshold` is the size of a change that matters,
    in the metric's units; its sign is ignored (a regression is a change of that size in the bad
    direction, an improvement in the good one)."""
    size = abs(threshold)
    good = delta if higher_is_better else -delta
    if p_adjusted >= alpha:
        return "neutral"
    if good < 0 and good <= -size:
        return "regression"
    if good > 0 and good >= size:
        return "improvement"
    return "neutral"
