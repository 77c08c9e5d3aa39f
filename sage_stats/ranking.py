"""Per-query ranking metrics of one variant's result lists from graded judgments.

nDCG@k and precision@k come from `ir_measures` (trec_eval's definitions through pytrec_eval), so a
number here is the number the field's tools give: linear gains (the grade itself), log2 discounts,
the ideal ranking built from every graded result of the query (the comparison passes the pool of
both variants, so the two variants of a query are normalised by the same ideal), unjudged and
missing positions count as grade 0 / not relevant and precision@k divides by k even when the list is
shorter. Mean relevance@k and defect rate@k are plain means of the judged top-k grades (no library
measure exists for them): a result without a grade is left out of them, and counted in coverage.

Every metric name is `<kind>@<k>` or, for a defect rate, `defect_rate@<k>:<dimension>`.
A metric that cannot be computed for a query (nothing of its top k is judged) is None, never NaN.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

KINDS = ("ndcg", "mean_relevance", "precision", "defect_rate")
# For the regression direction: a defect rate that goes up is worse.
HIGHER_IS_BETTER = {"ndcg": True, "mean_relevance": True, "precision": True, "defect_rate": False}
_NAME = re.compile(r"(ndcg|mean_relevance|precision|defect_rate)@([0-9]{1,4})(?::([a-z][a-z0-9_]{0,39}))?")

Grades = Mapping[str, Mapping[str, int]]  # doc id -> {dimension: grade}, for one query


class MetricNameError(ValueError):
    pass


@dataclass(frozen=True)
class MetricSpec:
    kind: str
    k: int
    dimension: str = ""

    @property
    def name(self) -> str:
        return f"{self.kind}@{self.k}" + (f":{self.dimension}" if self.dimension else "")

    @property
    def higher_is_better(self) -> bool:
        return HIGHER_IS_BETTER[self.kind]


def parse_metric(name: str) -> MetricSpec:
    """`ndcg@10`, `mean_relevance@10`, `precision@10`, `defect_rate@10:safety` → a spec."""
    match = _NAME.fullmatch(name.strip()) if isinstance(name, str) else None
    if not match:
        raise MetricNameError(f"Unknown metric {name!r}: use ndcg@k, mean_relevance@k, precision@k or "
                              "defect_rate@k:<dimension>.")
    kind, k, dimension = match.group(1), int(match.group(2)), match.group(3) or ""
    if k < 1:
        raise MetricNameError(f"{name}: k must be at least 1.")
    if (kind == "defect_rate") != bool(dimension):
        raise MetricNameError(f"{name}: a defect rate names one rubric dimension (defect_rate@k:<dimension>); "
                              "the other metrics name none.")
    return MetricSpec(kind=kind, k=k, dimension=dimension)


@dataclass(frozen=True)
class QueryMetrics:
    values: dict[str, float | None]  # metric name -> value for this query
    shown: int  # results in the top k (fewer when the list is shorter)
    judged: int  # of those, how many have a grade on the overall dimension


def per_query_metrics(rankings: Mapping[str, Sequence[str]], pool: Mapping[str, Grades], *,
                      metrics: Sequence[MetricSpec], overall: str, relevant_at: int,
                      defect_at: Mapping[str, int]) -> dict[str, QueryMetrics]:
    """Metrics of one variant: `rankings[q]` its documents in rank order, `pool[q]` the grades of every
    judged document of query q (both variants' results). `relevant_at`: an overall grade at or above
    it is relevant; `defect_at[dim]`: a grade at or below it on `dim` is a defect."""
    import ir_measures
    from ir_measures import P, Qrel, ScoredDoc, nDCG

    lib_measures = {}
    for spec in metrics:
        if spec.kind == "ndcg":
            lib_measures[spec.name] = nDCG @ spec.k
        elif spec.kind == "precision":
            lib_measures[spec.name] = P(rel=relevant_at) @ spec.k
    qrels = [Qrel(q, doc, int(labels[overall])) for q, docs in pool.items() for doc, labels in docs.items()
             if overall in labels]
    # Scores that strictly decrease with rank: trec_eval re-sorts by score and breaks ties by doc id, and
    # the variant's order is what is measured.
    run = [ScoredDoc(q, doc, float(len(docs) - r)) for q, docs in rankings.items() for r, doc in enumerate(docs)]
    from_lib: dict[tuple[str, str], float] = {}
    if lib_measures and qrels and run:
        by_measure = {m: name for name, m in lib_measures.items()}
        for row in ir_measures.iter_calc(list(lib_measures.values()), qrels, run):
            from_lib[(by_measure[row.measure], row.query_id)] = float(row.value)
    out: dict[str, QueryMetrics] = {}
    max_k = max((s.k for s in metrics), default=10)
    for q, docs in rankings.items():
        grades = pool.get(q, {})
        values: dict[str, float | None] = {}
        for spec in metrics:
            top = list(docs[:spec.k])
            judged = [grades[d] for d in top if d in grades and overall in grades[d]]
            if not judged:
                values[spec.name] = None
            elif spec.kind in ("ndcg", "precision"):
                # pytrec_eval leaves out a query whose pool has no grade at all; judged is non-empty here.
                values[spec.name] = from_lib.get((spec.name, q), 0.0)
            elif spec.kind == "mean_relevance":
                values[spec.name] = sum(g[overall] for g in judged) / len(judged)
            else:
                on_dim = [g[spec.dimension] for g in judged if spec.dimension in g]
                values[spec.name] = (sum(1 for v in on_dim if v <= defect_at[spec.dimension]) / len(on_dim)
                                     if on_dim else None)
        top = list(docs[:max_k])
        out[q] = QueryMetrics(values=values, shown=len(top),
                              judged=sum(1 for d in top if d in grades and overall in grades[d]))
    return out
