"""Helpers of bench/comparison_trec.py: the judge-pleasing variant, and CI coverage over random human slices.

The statistics are SAGE's own: `sage_stats.ppi.ppi_mean` (PPI++ via ppi_py's `ppi_mean_ci`, with
ppi_py's `classical_mean_ci` as the humans-only interval) — what comparisons/services.py runs. Nothing
here re-derives an interval; this module only draws the slices and counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from sage_stats.ppi import ppi_mean

Grades = Mapping[str, Mapping[str, int]]  # query -> doc -> grade


def judge_pleasing(control: Mapping[str, Sequence[str]], judge: Grades, nist: Grades, queries: Sequence[str], *,
                   swaps: int, rng: np.random.Generator) -> tuple[dict[str, list[str]], dict[str, int]]:
    """A treatment tuned against `judge` (Goodhart): per query, the control's top k with up to `swaps`
    documents exchanged for pool documents that the judge grades higher than NIST does.

    Per query: the control's documents are taken out lowest judge grade first (ties: the lower-ranked
    first) — what a ranker trained on the judge's grades would drop. Each is replaced by a pool document
    outside the control's top k that the judge over-grades (judge grade > NIST grade) and grades above the
    document it replaces, drawn at random (`rng`) among those; it takes the old document's rank. So the
    judge sees a gain on every swap, while by NIST a swap may gain, tie or lose: the judge's over-grading
    is planted in the delta on purpose (the NIST labels choose the candidates), and the NIST delta stays
    near zero with a real spread over queries. A stress test of a biased judge, not a ranker anyone would
    ship.

    Returns the treatment's top k per query and the number of swaps made per query.
    """
    treatment: dict[str, list[str]] = {}
    made: dict[str, int] = {}
    for q in queries:
        ranked = list(control[q])
        j, h = judge[q], nist[q]
        in_control = set(ranked)
        overgraded = [d for d in sorted(h) if d not in in_control and d in j and j[d] > h[d]]
        used: set[str] = set()
        out_order = sorted((pos for pos, d in enumerate(ranked) if d in j), key=lambda pos: (j[ranked[pos]], -pos))
        count = 0
        for pos in out_order:
            if count == swaps:
                break
            candidates = [d for d in overgraded if d not in used and j[d] > j[ranked[pos]]]
            if not candidates:
                continue
            new = candidates[int(rng.integers(len(candidates)))]
            ranked[pos] = new
            used.add(new)
            count += 1
        treatment[q] = ranked
        made[q] = count
    return treatment, made


def ci_call(low: float, high: float, estimate: float, threshold: float) -> str:
    """The verdict an interval alone gives: improvement when it excludes 0 above and the estimate is at
    least the threshold, regression likewise below, else neutral. (SAGE's own verdict uses the Holm-
    adjusted permutation p-value instead of the interval; this is the like-for-like rule for judge-only,
    PPI and humans-only intervals, none of which has a p-value of the same kind.)"""
    if low > 0 and estimate >= threshold:
        return "improvement"
    if high < 0 and estimate <= -threshold:
        return "regression"
    return "neutral"


@dataclass
class Coverage:
    slices: int
    labelled: int
    ppi_covers: float
    humans_only_covers: float
    ppi_call_agrees: float  # share of slices whose PPI interval's call equals the truth's call
    humans_only_call_agrees: float
    ppi_median_width: float
    humans_only_median_width: float

    def as_dict(self) -> dict:
        return asdict(self)


def query_slice_coverage(y_all: np.ndarray, yhat_all: np.ndarray, *, truth: float, truth_call: str, threshold: float,
                         n_labelled: int, slices: int, rng: np.random.Generator) -> Coverage:
    """Humans label every compared result of `n_labelled` random queries (SAGE's per-query PPI): per
    slice, PPI++ of the mean per-query delta from the judge's deltas of all queries and the humans'
    deltas of the slice. `truth` is the NIST delta over all queries; `truth_call` its verdict."""
    keep = np.isfinite(y_all) & np.isfinite(yhat_all)
    return slice_coverage(y_all[keep], yhat_all[keep], 1.0, truth=truth, truth_call=truth_call, threshold=threshold,
                          n_labelled=n_labelled, slices=slices, rng=rng)


def slice_coverage(y: np.ndarray, yhat: np.ndarray, scale: float, *, truth: float, truth_call: str, threshold: float,
                   n_labelled: int, slices: int, rng: np.random.Generator) -> Coverage:
    """Over `slices` random slices of `n_labelled` units (queries or items) labelled by humans: how often
    the PPI++ CI and the humans-only CI of scale × the unit mean cover `truth`, and agree with its call."""
    n = len(y)
    covered = classical = agree = agree_classical = 0
    widths, c_widths = [], []
    for _ in range(slices):
        mask = np.zeros(n, dtype=bool)
        mask[rng.choice(n, size=n_labelled, replace=False)] = True
        r = ppi_mean(y[mask], yhat[mask], yhat[~mask])
        low, high, est = scale * r.ci_low, scale * r.ci_high, scale * r.estimate
        c_low, c_high, c_est = scale * r.classical_ci_low, scale * r.classical_ci_high, scale * r.classical_estimate
        covered += low <= truth <= high
        classical += c_low <= truth <= c_high
        agree += ci_call(low, high, est, threshold) == truth_call
        agree_classical += ci_call(c_low, c_high, c_est, threshold) == truth_call
        widths.append(high - low)
        c_widths.append(c_high - c_low)
    return Coverage(slices, n_labelled, covered / slices, classical / slices, agree / slices, agree_classical / slices,
                    float(np.median(widths)), float(np.median(c_widths)))


def item_population(control: Mapping[str, Sequence[str]], treatment: Mapping[str, Sequence[str]], judge: Grades,
                    nist: Grades, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The distinct (query, document) items a comparison judges, as the item-level estimand of the mean
    relevance@k delta: item value w * grade, w = +1 in the treatment's top k only, -1 in the control's
    only, 0 in both (it cancels). mean relevance@k delta = sum(w * grade) / (k * queries) = scale *
    mean over items of (w * grade). Returns (human values, judge values, scale)."""
    y, yhat = [], []
    for q in queries:
        c, t = set(control[q][:k]), set(treatment[q][:k])
        if len(control[q][:k]) != k or len(treatment[q][:k]) != k:
            raise ValueError(f"query {q}: the item-level estimand assumes full top-{k} lists")
        for d in sorted(c | t):
            w = (d in t) - (d in c)
            y.append(w * nist[q][d])
            yhat.append(w * judge[q][d])
    return np.asarray(y, dtype=float), np.asarray(yhat, dtype=float), len(y) / (k * len(queries))


def item_slice_coverage(y: np.ndarray, yhat: np.ndarray, scale: float, *, truth: float, truth_call: str,
                        threshold: float, fraction: float, slices: int, rng: np.random.Generator) -> Coverage:
    """Humans label a random `fraction` of the comparison's distinct items (not whole queries): PPI++ of
    the item mean, scaled to the mean relevance@k delta. The judge-only side is every item's judge grade.
    Items are drawn without replacement from a finite population while ppi_py assumes i.i.d. draws, so
    its intervals are, if anything, slightly conservative here."""
    n_labelled = max(3, round(fraction * len(y)))
    return slice_coverage(y, yhat, scale, truth=truth, truth_call=truth_call, threshold=threshold,
                          n_labelled=n_labelled, slices=slices, rng=rng)
