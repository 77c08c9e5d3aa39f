"""Reads for the calibration pages: the runs of a policy with their agreement, the human ceiling,
segment and clause breakdowns, and drill-down to items."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db.models import Count, QuerySet

from judges.models import JudgeRun, Judgment
from policy.models import Policy
from review.models import HumanLabel
from traffic.models import Item

from .agreement import dimension_agreement
from .charts import confusion_spec, segment_spec, trend_spec
from .models import AgreementSnapshot, Disagreement, TriageDecision
from .selectors import agreement_human_human, run_paired_with_humans
from .services import agreement_snapshots

METRICS = ("kappa_quadratic", "kappa_linear", "kappa", "alpha", "exact")


def finished_runs(policy: Policy) -> QuerySet[JudgeRun]:
    return (JudgeRun.objects.filter(judge_version__policy_version__policy=policy, status=JudgeRun.Status.SUCCEEDED)
            .select_related("judge_version__judge", "judge_version__policy_version", "sample")
            .order_by("judge_version__policy_version__number", "created_at"))


@dataclass
class RunRow:
    run: JudgeRun
    snapshots: list[AgreementSnapshot]

    @property
    def overall(self) -> AgreementSnapshot | None:
        key = self.run.judge_version.policy_version.parsed_rubric().overall.key
        return next((s for s in self.snapshots if s.dimension == key), None)


def human_ceiling(policy: Policy) -> dict[str, Any] | None:
    """Human-human agreement on the overall dimension, on items two or more people labelled."""
    version = policy.latest_published()
    if version is None:
        return None
    multi = (HumanLabel.objects.filter(is_latest=True, item__sample_items__sample__surface=policy.surface)
             .values("item_id").annotate(n=Count("reviewer", distinct=True)).filter(n__gte=2).values_list("item_id", flat=True))
    item_ids = list(multi.distinct())
    if len(item_ids) < 2:
        return None
    overall = version.parsed_rubric().overall.key
    result = next(r for r in agreement_human_human(item_ids, version) if r.dimension == overall)
    return {"n": result.n, "estimates": result.estimates, "ci": result.ci}


def calibration_overview(policy: Policy, *, metric: str) -> dict[str, Any]:
    rows = [RunRow(run=run, snapshots=agreement_snapshots(run=run)) for run in finished_runs(policy)]
    ceiling = human_ceiling(policy)
    points = []
    for order, row in enumerate(rows):
        snap = row.overall
        if snap is None or snap.estimates.get(metric) is None:
            continue
        ci = snap.ci.get(metric) or [None, None]
        points.append({"order": order, "label": f"#{row.run.pk} {row.run.judge_version.policy_version.label} · {row.run.judge_version.judge.name}",
                       "judge": row.run.judge_version.judge.name, "policy": row.run.judge_version.policy_version.label,
                       "value": snap.estimates[metric], "low": ci[0], "high": ci[1], "n": snap.n})
    ceiling_value = ceiling["estimates"].get(metric) if ceiling else None
    return {"rows": rows, "ceiling": ceiling, "trend": trend_spec(points, metric=metric, ceiling=ceiling_value),
            "has_points": bool(points)}


def confusion_charts(run: JudgeRun, snapshots: list[AgreementSnapshot]) -> list[dict[str, Any]]:
    rubric = run.judge_version.policy_version.parsed_rubric()
    return [{"dimension": s.dimension, "id": f"confusion-{s.dimension}", "spec": confusion_spec(
        s.confusion, s.values, a="judge", b="humans", title=f"{rubric.dimension(s.dimension).name}: judge × human consensus")}
        for s in snapshots if s.n]


def segment_breakdown(run: JudgeRun, *, metric: str, max_items: int = 200_000) -> dict[str, Any] | None:
    """Agreement on the overall dimension per query segment (skipped for very large runs)."""
    if run.total_items > max_items:
        return None  # decided before loading a million labels
    dim = run.judge_version.policy_version.parsed_rubric().overall
    common, judge, human, _ = run_paired_with_humans(run, dim.key)
    if common.size == 0:
        return None
    info = dict((pk, (qid, seg)) for pk, qid, seg in Item.objects.filter(pk__in=common.tolist())
                .values_list("pk", "query_id", "query__segment"))
    segments = np.array([info[i][1] or "(none)" for i in common.tolist()])
    queries = np.array([info[i][0] for i in common.tolist()])
    rows = []
    for segment in sorted(set(segments.tolist())):
        mask = segments == segment
        r = dimension_agreement(dimension=dim.key, a=judge[mask], b=human[mask], groups=queries[mask],
                                values=dim.values, n_resamples=500)
        value = r.estimates.get(metric)
        ci = r.ci.get(metric) or (None, None)
        rows.append({"segment": segment, "value": value, "low": ci[0], "high": ci[1], "n": r.n, "reason": r.reason})
    chartable = [r for r in rows if r["value"] is not None]
    return {"rows": rows, "spec": segment_spec(chartable, metric=metric) if chartable else None}


def clause_breakdown(run: JudgeRun) -> list[tuple[str, int, int, int]]:
    """Resolved disagreements of a run by the clause the triager cited: (clause, judge wrong, human wrong, ambiguous)."""
    counts: dict[str, list[int]] = {}
    order = [TriageDecision.Resolution.JUDGE_WRONG, TriageDecision.Resolution.HUMAN_WRONG,
             TriageDecision.Resolution.POLICY_AMBIGUOUS]
    for clause, resolution, n in (TriageDecision.objects.filter(disagreement__run=run)
                                  .values_list("clause", "resolution").annotate(n=Count("id"))):
        counts.setdefault(clause or "(no clause)", [0, 0, 0])[order.index(resolution)] += n
    return [(clause, *values) for clause, values in sorted(counts.items())]


def cell_items(run: JudgeRun, *, dimension: str, judge_value: int, human_value: int, limit: int = 200) -> list[dict[str, Any]]:
    """The items behind one confusion-matrix cell."""
    common, judge, human, counts = run_paired_with_humans(run, dimension)
    mask = (judge == judge_value) & (human == human_value)
    ids = common[mask][:limit].tolist()
    judgments = {j.item_id: j for j in Judgment.objects.filter(run=run, item_id__in=ids).select_related("item__query", "item__document")}
    return [{"judgment": judgments[i], "humans": int(counts[mask][n])} for n, i in enumerate(ids)]


def triage_queryset(*, run_id: str = "", dimension: str = "", min_distance: str = "", clause: str = "",
                    segment: str = "", status: str = "open") -> QuerySet[Disagreement]:
    qs = Disagreement.objects.select_related("item__query", "item__document", "run__judge_version__judge", "judgment")
    if run_id.isdigit():
        qs = qs.filter(run_id=int(run_id))
    if dimension:
        qs = qs.filter(dimension=dimension)
    if min_distance.isdigit():
        qs = qs.filter(distance__gte=int(min_distance))
    if clause:
        qs = qs.filter(decision__clause=clause)
    if segment:
        qs = qs.filter(item__query__segment=segment)
    if status in Disagreement.Status.values:
        qs = qs.filter(status=status)
    return qs.order_by("-distance", "id")
