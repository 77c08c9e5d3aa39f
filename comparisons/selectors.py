"""Reads of the comparisons app: the index, one query's two result lists, the history of a treatment."""

from __future__ import annotations

from typing import Any

from django.core.cache import cache
from django.db.models import Count, QuerySet, Sum

from judges.models import Judgment
from traffic.models import Document, Item, Query, ResultEntry, Variant

from .models import Comparison
from .services import comparison_grades, comparison_rankings


def comparisons_for_index(*, surface_id: int | None = None, treatment_id: int | None = None,
                          limit: int = 100) -> QuerySet[Comparison]:
    qs = Comparison.objects.select_related("surface", "control", "treatment", "judge_version__judge", "judge_run")
    if surface_id is not None:
        qs = qs.filter(surface_id=surface_id)
    if treatment_id is not None:
        qs = qs.filter(treatment_id=treatment_id)
    return qs[:limit]


def metric_rows(comparison: Comparison) -> list[dict[str, Any]]:
    """The metric table: one row per metric, in the comparison's order."""
    metrics = (comparison.results or {}).get("metrics", {})
    return [{"name": name, **metrics[name]} for name in comparison.metrics if name in metrics]


def queries_by_delta(comparison: Comparison, metric: str) -> list[dict[str, Any]]:
    """The compared queries sorted by the metric's delta, worst first (None last)."""
    rows = []
    higher = (comparison.results.get("metrics", {}).get(metric) or {}).get("higher_is_better", True)
    for q in comparison.results.get("per_query", []):
        c, t = q["control"].get(metric), q["treatment"].get(metric)
        delta = None if c is None or t is None else t - c
        rows.append({"query_id": q["query_id"], "text": q["text"], "control": c, "treatment": t, "delta": delta,
                     "coverage": q["coverage"]})
    sign = 1 if higher else -1
    return sorted(rows, key=lambda r: (r["delta"] is None, sign * (r["delta"] or 0), r["query_id"]))


def query_detail(comparison: Comparison, query_id: int) -> dict[str, Any] | None:
    """Both variants' top k for one compared query with grades, rationales and rank moves; None if
    the query is not part of the comparison."""
    rankings, _texts = comparison_rankings(comparison, only_query=query_id)
    control = rankings.get(comparison.control_id, {}).get(query_id)
    treatment = rankings.get(comparison.treatment_id, {}).get(query_id)
    if control is None or treatment is None:
        return None
    items = {i.pk: i for i in Item.objects.filter(pk__in=set(control) | set(treatment)).select_related("document")}
    grades = comparison_grades(comparison, items=items)
    rationale_qs = Judgment.objects.filter(item_id__in=list(items), status=Judgment.Status.OK)
    rationale_qs = (rationale_qs.filter(run_id=comparison.judge_run_id) if comparison.judge_run_id
                    else rationale_qs.filter(judge_version_id=comparison.judge_version_id).order_by("item_id", "-id"))
    rationales: dict[int, str] = {}
    for item_id, text in rationale_qs.values_list("item_id", "rationale"):
        rationales.setdefault(item_id, text)
    c_rank = {item: r for r, item in enumerate(control, 1)}
    t_rank = {item: r for r, item in enumerate(treatment, 1)}

    def rows(order: list[int], other: dict[int, int]) -> list[dict[str, Any]]:
        out = []
        for rank, item_id in enumerate(order, 1):
            before = other.get(item_id)
            out.append({"rank": rank, "item": items[item_id], "document": items[item_id].document,
                        "labels": grades.get(item_id), "rationale": rationales.get(item_id, ""),
                        "other_rank": before, "move": None if before is None else before - rank})
        return out

    per_query = next((q for q in comparison.results.get("per_query", []) if q["query_id"] == query_id), None)
    return {"query": Query.objects.get(pk=query_id), "control": rows(control, t_rank), "treatment": rows(treatment, c_rank),
            "metrics": per_query, "only_control": len(set(control) - set(treatment)),
            "only_treatment": len(set(treatment) - set(control))}


def flagged_counts(comparison: Comparison) -> dict[str, int]:
    """{"control": n, "treatment": m}: the compared results (top k of the sample's queries, within its
    snapshot) of each variant whose document carries an injection flag. Their labels may have been
    talked up by the result itself; the detail page says how many each side has.

    Cached by comparison and by the set of flagged documents (`_flags_token`): the compared results
    are frozen by the sample's snapshot, so only a flag set or cleared (an import, the backfill
    command) changes the counts, and counting them joins every compared result to its document
    (0.1-1 s at 10M judgments, on every view of the page)."""
    if not comparison.sample_id:
        return {"control": 0, "treatment": 0}
    key = f"sage:flagged:{comparison.pk}:{comparison.sample_id}:{comparison.k}:{_flags_token()}"
    counts = cache.get(key)
    if counts is None:
        counts = _flagged_counts(comparison)
        cache.set(key, counts, FLAGGED_CACHE_S)
    return counts


FLAGGED_CACHE_S = 24 * 3600  # the key changes with the flags; the entry need only outlive a day's views


def _flags_token() -> str:
    """Changes whenever a document's flag is set or cleared: the flagged documents' number and id
    sum, read from the partial index `document_flagged`, which holds only them."""
    flagged = Document.objects.filter(injection_flag=True).aggregate(n=Count("id"), total=Sum("id"))
    return f"{flagged['n']}-{flagged['total'] or 0}"


def _flagged_counts(comparison: Comparison) -> dict[str, int]:
    # The sample's queries as a list, not a subquery: a freshly drawn sample has no statistics yet
    # (its rows are too few to trigger an autoanalyze of a 10M-row table), and the planner, taking
    # it for one row, looped over the result entries' index per query: 0.96 s at 10M judgments
    # against 0.15 s with the list (BENCHMARKS.md, "Scale: 10M judgments").
    queries = list(Item.objects.filter(sample_items__sample_id=comparison.sample_id).order_by()
                   .values_list("query_id", flat=True).distinct())
    counts = dict(ResultEntry.objects.filter(
        id__lte=int(comparison.sample.snapshot.get("max_entry_id", 0)), query_id__in=queries,
        variant_id__in=[comparison.control_id, comparison.treatment_id], rank__lte=comparison.k,
        item__document__injection_flag=True,
    ).values("variant_id").annotate(n=Count("item_id", distinct=True)).values_list("variant_id", "n"))
    return {"control": counts.get(comparison.control_id, 0), "treatment": counts.get(comparison.treatment_id, 0)}


def treatment_history(*, treatment: Variant) -> list[dict[str, Any]]:
    """Finished comparisons of a treatment, oldest first: a point per comparison and metric."""
    points = []
    for c in (Comparison.objects.filter(treatment=treatment, status__in=[Comparison.Status.DONE,
                                                                        Comparison.Status.INCONCLUSIVE])
              .select_related("control").order_by("created_at", "pk")):
        for name, row in c.results.get("metrics", {}).items():
            if row.get("delta") is None:
                continue
            points.append({"comparison": c.pk, "label": f"#{c.pk} · ramp {c.treatment_ramp:g}% · vs {c.control.name}",
                           "order": c.pk, "ramp": float(c.treatment_ramp), "metric": name, "delta": row["delta"],
                           "low": row["ci_low"], "high": row["ci_high"], "verdict": row["verdict"],
                           "when": c.created_at.isoformat()})
    return points
