"""Reads for the calibration pages: the runs of a policy with their agreement, the human ceiling,
segment and clause breakdowns, drill-down to items, before/after comparisons.

Nothing here writes: a page that finds a stored agreement stale computes it afresh and shows it
unsaved, kept per process for an ended run (`services.agreement_snapshots` stores them, from POSTs
and the demo loader)."""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.core.cache import cache
from django.db.models import Count, F, Max, QuerySet

from judges.models import JudgeRun, Judgment
from judges.selectors import run_cached
from policy.models import Policy
from review.models import HumanLabel
from sage.params import parse_int
from sage_stats import CONSENSUS_RULE, dimension_agreement
from traffic.models import Item

from .charts import confusion_spec, segment_spec, trend_spec
from .models import AgreementSnapshot, Disagreement, GoldLabeller, TriageDecision
from .selectors import (
    CEILING_RULE,
    agreement_human_human,
    agreement_run_vs_humans,
    label_sources,
    labels_token,
    multiply_labelled_items,
    run_paired_with_humans,
    snapshot_fields,
    snapshot_token,
)

METRICS = ("kappa_quadratic", "kappa_linear", "kappa", "alpha", "exact")
# Runs that ended with a judgment for every item; with errors, the labels that exist are still real
# and the pages say how many items have none.
JUDGED_STATUSES = (JudgeRun.Status.SUCCEEDED, JudgeRun.Status.WITH_ERRORS)


def finished_runs(policy: Policy) -> QuerySet[JudgeRun]:
    """Runs of the policy that ended with a judgment for every item (some may be errors)."""
    return (JudgeRun.objects.filter(judge_version__policy_version__policy=policy, status__in=JUDGED_STATUSES)
            .select_related("judge_version__judge", "judge_version__policy_version", "sample")
            .order_by("judge_version__policy_version__number", "created_at"))


def most_recently_judged(policies: list[Policy]) -> Policy | None:
    """The policy whose latest finished run is the newest; else the first policy (none has runs)."""
    latest = (JudgeRun.objects.filter(status__in=JUDGED_STATUSES)
              .values("judge_version__policy_version__policy_id")
              .annotate(last=Max("finished_at"), created=Max("created_at"))
              .order_by(F("last").desc(nulls_last=True), "-created").first())
    wanted = latest["judge_version__policy_version__policy_id"] if latest else None
    return next((p for p in policies if p.pk == wanted), policies[0] if policies else None)


def paired_with_humans(run: JudgeRun, dimension: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """`run_paired_with_humans`, kept per process for an ended run until its judgments or the human
    labels change (`run_cached`, the labels' token in the name). The drill-down and before/after
    pages otherwise re-read a big run's paired labels on every view (2-2.5 s per run and dimension at
    1M judgments, BENCHMARKS.md "Ten runs of 1M")."""
    return run_cached(run, f"paired:{dimension}:{labels_token()}", lambda: run_paired_with_humans(run, dimension))


def consensus_description() -> dict[str, Any]:
    """The human-consensus rule as pages state it, with the gold labellers by name."""
    gold = list(GoldLabeller.objects.select_related("user").values_list("user__username", flat=True))
    return {"rule": CONSENSUS_RULE, "gold": gold}


def run_agreement(run: JudgeRun, *, n_resamples: int = 1000) -> list[AgreementSnapshot]:
    """The run's per-dimension agreement with humans: the stored snapshots when current, otherwise
    computed now and returned unsaved (a page view never writes)."""
    token = snapshot_token(run)
    dims = run.judge_version.policy_version.parsed_rubric().keys
    stored = sorted(AgreementSnapshot.objects.filter(run=run), key=lambda s: dims.index(s.dimension)
                    if s.dimension in dims else len(dims))
    if stored and len(stored) == len(dims) and all(s.labels_token == token for s in stored):
        return stored
    # Nothing stored yet (a run that just ended; snapshots are stored by POSTs): kept per process
    # instead, or the dashboard recomputed every such run on every view (17 s for ten 1M-judgment
    # runs, BENCHMARKS.md "Ten runs of 1M").
    return run_cached(run, f"agreement:{n_resamples}:{token}", lambda: [
        AgreementSnapshot(run=run, dimension=r.dimension, **snapshot_fields(r, token))
        for r in agreement_run_vs_humans(run, n_resamples=n_resamples)])


@dataclass
class RunRow:
    run: JudgeRun
    snapshots: list[AgreementSnapshot]

    @property
    def overall(self) -> AgreementSnapshot | None:
        key = self.run.judge_version.policy_version.parsed_rubric().overall.key
        return next((s for s in self.snapshots if s.dimension == key), None)


def human_ceiling(runs: list[JudgeRun], *, n_resamples: int = 1000) -> dict[str, Any] | None:
    """Human–human agreement on the overall dimension, on the items of these runs that two or more
    people labelled — whatever queue, policy version or import the labels came from (CEILING_RULE).
    None when there are no runs; a dict with n 0 and a reason when no item has two labels.

    Cached until a human label is added or corrected or the gold labellers change (the token that
    agreement snapshots use): finding the multiply-labelled items groups every latest label of the
    runs' samples, 24 s at 10M sample items (BENCHMARKS.md, "Scale: 10M judgments"), and the run page
    and the dashboard show the ceiling on every view. The cache is per process (Django's default
    local-memory cache unless CACHES says otherwise), so each web worker computes it once."""
    if not runs:
        return None
    version = runs[-1].judge_version.policy_version
    overall = version.parsed_rubric().overall
    samples = sorted({r.sample_id for r in runs})
    key = (f"sage:ceiling:{version.pk}:{overall.key}:{n_resamples}:{labels_token()}:"
           + hashlib.sha256(",".join(map(str, samples)).encode()).hexdigest()[:16])
    cached = cache.get(key)
    if cached is None:
        cached = _human_ceiling(version, overall.key, samples, n_resamples)
        cache.set(key, cached, CEILING_CACHE_S)
    return copy.deepcopy(cached)


# The key changes with every new label, so entries only need to outlive a busy hour.
CEILING_CACHE_S = 3600


def _human_ceiling(version: Any, dimension: str, sample_ids: list[int], n_resamples: int) -> dict[str, Any]:
    item_ids = multiply_labelled_items(sample_ids, dimension)
    base = {"dimension": dimension, "rule": CEILING_RULE, "n": len(item_ids), "n_queries": 0, "sources": [],
            "estimates": {}, "ci": {}, "ci_method": "", "warning": None, "alpha_all": None, "labellers": 0,
            "reason": None}
    if len(item_ids) < 2:
        base["reason"] = ("no item of these runs has two human labels yet (a review queue with overlap ≥ 2 builds it)"
                          if not item_ids else "only one item of these runs has two human labels")
        return base
    [result] = agreement_human_human(item_ids, version, dimensions=[dimension], n_resamples=n_resamples)
    base.update(n=result.n, n_queries=result.n_queries, estimates=result.estimates,
                ci={k: list(v) if v else None for k, v in result.ci.items()}, ci_method=result.ci_method,
                warning=result.warning, alpha_all=result.extra.get("alpha_all_labellers"),
                labellers=result.extra.get("labellers", 0), reason=result.reason,
                sources=label_sources(item_ids, dimension))
    return base


def calibration_overview(policy: Policy, *, metric: str) -> dict[str, Any]:
    runs = list(finished_runs(policy))
    rows = [RunRow(run=run, snapshots=run_agreement(run)) for run in runs]
    ceiling = human_ceiling(runs)
    points = []
    for order, row in enumerate(rows):
        snap = row.overall
        if snap is None or snap.estimates.get(metric) is None:
            continue
        ci = snap.ci.get(metric) or [None, None]
        points.append({"order": order, "label": f"#{row.run.pk} {row.run.judge_version.policy_version.label} · {row.run.judge_version.judge.name}",
                       "judge": row.run.judge_version.judge.name, "policy": row.run.judge_version.policy_version.label,
                       "value": snap.estimates[metric], "low": ci[0], "high": ci[1], "n": snap.n,
                       "queries": snap.n_queries})
    ceiling_value = ceiling["estimates"].get(metric) if ceiling else None
    return {"rows": rows, "ceiling": ceiling, "trend": trend_spec(points, metric=metric, ceiling=ceiling_value),
            "has_points": bool(points), "consensus": consensus_description()}


def confusion_charts(run: JudgeRun, snapshots: list[AgreementSnapshot]) -> list[dict[str, Any]]:
    rubric = run.judge_version.policy_version.parsed_rubric()
    return [{"dimension": s.dimension, "id": f"confusion-{s.dimension}", "spec": confusion_spec(
        s.confusion, s.values, a="judge", b="humans", title=f"{rubric.dimension(s.dimension).name}: judge × human consensus")}
        for s in snapshots if s.n]


def segment_breakdown(run: JudgeRun, *, metric: str, max_items: int = 200_000) -> dict[str, Any] | None:
    """Agreement on the overall dimension per query segment (skipped for very large runs), kept per
    process for an ended run: its bootstraps took 0.66 s of every run page view at 200k items."""
    if run.total_items > max_items:
        return None  # decided before loading a million labels
    return run_cached(run, f"segments:{metric}:{labels_token()}", lambda: _segment_breakdown(run, metric))


def _segment_breakdown(run: JudgeRun, metric: str) -> dict[str, Any] | None:
    dim = run.judge_version.policy_version.parsed_rubric().overall
    common, judge, human, _ = paired_with_humans(run, dim.key)
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
        rows.append({"segment": segment, "value": value, "low": ci[0], "high": ci[1], "n": r.n, "reason": r.reason,
                     "queries": r.n_queries, "warning": r.warning})
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
    """The items behind one confusion-matrix cell, each with every latest human label on it (who, what
    value, under which policy version, whether gold) that its consensus came from."""
    common, judge, human, _ = paired_with_humans(run, dimension)
    mask = (judge == judge_value) & (human == human_value)
    ids = common[mask][:limit].tolist()
    judgments = {j.item_id: j for j in Judgment.objects.filter(run=run, item_id__in=ids).select_related("item__query", "item__document")}
    gold = set(GoldLabeller.objects.values_list("user_id", flat=True))
    labels: dict[int, list[dict[str, Any]]] = {}
    for label in (HumanLabel.objects.filter(item_id__in=ids, is_latest=True, labels__has_key=dimension)
                  .select_related("reviewer", "policy_version").order_by("reviewer__username")):
        labels.setdefault(label.item_id, []).append({
            "who": label.reviewer.get_username(), "value": label.labels.get(dimension),
            "version": label.policy_version.label, "gold": label.reviewer_id in gold, "source": label.get_source_display()})
    return [{"judgment": judgments[i], "humans": labels.get(i, []), "consensus": human_value} for i in ids]


def triage_queryset(*, run_id: str = "", dimension: str = "", min_distance: str = "", clause: str = "",
                    segment: str = "", status: str = "open") -> QuerySet[Disagreement]:
    qs = Disagreement.objects.select_related("item__query", "item__document", "run__judge_version__judge", "judgment")
    if (run := parse_int(run_id, minimum=1)) is not None:
        qs = qs.filter(run_id=run)
    if dimension:
        qs = qs.filter(dimension=dimension)
    if (distance := parse_int(min_distance, minimum=0)) is not None:
        qs = qs.filter(distance__gte=distance)
    if clause:
        qs = qs.filter(decision__clause=clause)
    if segment:
        qs = qs.filter(item__query__segment=segment)
    if status in Disagreement.Status.values:
        qs = qs.filter(status=status)
    return qs.order_by("-distance", "id")


def run_coverage(run: JudgeRun) -> dict[str, int]:
    """How many of the run's sample items have a usable judgment, an error, or nothing at all."""
    return run_cached(run, "coverage", lambda: _run_coverage(run))


def _run_coverage(run: JudgeRun) -> dict[str, int]:
    items = run.sample.sample_items.count()
    ok = Judgment.objects.filter(run=run, status=Judgment.Status.OK).count()
    errors = Judgment.objects.filter(run=run).exclude(status=Judgment.Status.OK).count()
    return {"items": items, "judged": ok, "errors": errors, "missing": max(0, items - ok - errors),
            "unjudged": max(0, items - ok)}


def _paired_sets(run: JudgeRun, min_distance: int) -> tuple[set[tuple[int, str]], set[tuple[int, str]]]:
    """((item, dimension) pairs with a judge label and a human consensus, the subset that disagree)."""
    paired: set[tuple[int, str]] = set()
    disagree: set[tuple[int, str]] = set()
    for dim in run.judge_version.policy_version.parsed_rubric().dimensions:
        common, judge, human, _ = paired_with_humans(run, dim.key)
        far = np.abs(judge - human) >= min_distance
        paired.update((int(i), dim.key) for i in common.tolist())
        disagree.update((int(i), dim.key) for i in common[far].tolist())
    return paired, disagree


def disagreement_diff(*, old: JudgeRun, new: JudgeRun, min_distance: int = 1) -> dict[str, Any]:
    """Disagreements of `old` that `new` fixed, ones `new` introduced, ones both have, and — never
    counted as fixed — old disagreements the new run has no label for (its item failed or is missing).
    Computed from the labels, read-only: the triage queue is filled only by an explicit POST."""
    old_paired, before = _paired_sets(old, min_distance)
    new_paired, after = _paired_sets(new, min_distance)
    return {"fixed": sorted(k for k in before - after if k in new_paired), "introduced": sorted(after - before),
            "still": sorted(before & after), "no_judgment": sorted(k for k in before if k not in new_paired),
            "old_paired": len(old_paired), "new_paired": len(new_paired)}


def run_comparison(old: JudgeRun, new: JudgeRun) -> dict[str, Any]:
    """Everything the before/after page shows, including how many items each run has no judgment for."""
    old_snaps = {s.dimension: s for s in run_agreement(old)}
    new_snaps = {s.dimension: s for s in run_agreement(new)}
    coverage = {"old": run_coverage(old), "new": run_coverage(new)}
    # Kept while both runs stay as they are (the old one's state is in the name, the new one's in the key).
    diff = (disagreement_diff(old=old, new=new) if old.is_active else run_cached(
        new, f"diff:{old.pk}:{old.created_at.timestamp()}:{old.status}:{old.done_items}:{labels_token()}",
        lambda: disagreement_diff(old=old, new=new)))
    return {"dimensions": [(dim, old_snaps.get(dim), new_snaps.get(dim)) for dim in new_snaps if dim in old_snaps],
            "diff": diff, "coverage": coverage,
            "nothing_judged": coverage["new"]["judged"] == 0}
