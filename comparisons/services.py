"""Writes of the comparisons app: create a comparison, compute its results when its judging ends.

The API the regression gate (gates/) builds on:

    comparison_create(surface=, control=, treatment=, judge_version=, k=10, metrics=DEFAULT_METRICS,
                      thresholds=None, alpha=0.05, query_sample=None, name="", user=, source="ui",
                      min_coverage=None) -> Comparison
    comparison_refresh(comparison_id=) -> Comparison

Metric names (`metrics`, and the keys of `thresholds` and of `results["metrics"]`):
    "ndcg@<k>"                       nDCG (graded, linear gains, ir_measures/trec_eval), higher is better
    "mean_relevance@<k>"             mean overall grade of the judged top k, higher is better
    "precision@<k>"                  share of the top k that is relevant (overall grade >= the rubric's
                                     upper half: 2 on TREC's 0-3), higher is better
    "defect_rate@<k>:<dimension>"    share of the judged top k at or below the dimension's lowest level,
                                     lower is better
`<k>` is a number no larger than the comparison's k; a name may also say "@k", replaced by the
comparison's k (DEFAULT_METRICS does). `thresholds[name]` is the size of a change that matters, in
the metric's units (sign ignored: -0.02 and 0.02 both mean "a 0.02 drop of nDCG is a regression");
unset metrics get DEFAULT_THRESHOLDS by kind.

`query_sample` (a QuerySpec): all queries both variants served (the default), a seeded random
`queries=n` of them, or the queries of an existing traffic `sample`. Status: queued → judging → done
| failed | inconclusive; `message` says why for the last two. A comparison whose judged share of
results (coverage) is below `min_coverage` is inconclusive: every metric's verdict is
"inconclusive", with the reason. `results` holds, per metric: control, treatment, delta, ci_low,
ci_high, p_value, p_adjusted, verdict, mde, n (queries), threshold, higher_is_better, ppi (or None);
and coverage, queries, correction, alpha, verdict (overall: "regression" if any metric is one).

Bad input raises ComparisonError and writes nothing (the sample, run and comparison are one
transaction; the computation is queued on commit).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from judges.models import JudgeRun, JudgeVersion, Judgment
from judges.services import JudgeError, judge_run_start
from policy.models import Surface
from policy.rubric import Rubric
from sage.roles import Role, has_role
from sage_stats.paired import MIN_QUERIES, holm_adjust, paired_compare, verdict
from sage_stats.ppi import MIN_LABELLED, labels_needed, ppi_mean
from sage_stats.ranking import MetricNameError, MetricSpec, parse_metric, per_query_metrics
from traffic.models import Item, Query, ResultEntry, Sample, SampleItem, Variant
from traffic.sampling import traffic_snapshot
from traffic.services import TrafficError, sample_draw

from .models import Comparison

logger = logging.getLogger(__name__)

DEFAULT_METRICS: tuple[str, ...] = ("ndcg@k", "mean_relevance@k", "precision@k")
DEFAULT_THRESHOLDS = {"ndcg": 0.02, "mean_relevance": 0.05, "precision": 0.02, "defect_rate": 0.01}
CORRECTION = "Holm step-down over the {n} metric(s), family-wise error rate {alpha}"
MAX_K = 100


class ComparisonError(Exception):
    """Bad input or a rule broken; the message is shown to the user as is."""


@dataclass(frozen=True)
class QuerySpec:
    """Which queries: all shared ones (nothing set), a seeded random `queries` of them, or those of `sample`."""

    queries: int | None = None
    seed: int = 0
    sample: Sample | None = None

    def as_json(self) -> dict[str, Any]:
        if self.sample is not None:
            return {"kind": "sample", "sample_id": self.sample.pk}
        if self.queries is not None:
            return {"kind": "random", "queries": self.queries, "seed": self.seed}
        return {"kind": "all"}


def relevant_grade(rubric: Rubric) -> int:
    """The lowest overall grade counted as relevant: the upper half of the scale (TREC 0-3: 2)."""
    dim = rubric.overall
    middle = (dim.min_value + dim.max_value) / 2
    return next(v for v in dim.values if v > middle)


def defect_grade(rubric: Rubric, dimension: str) -> int:
    """A grade at or below this on `dimension` is a defect: its lowest level."""
    return rubric.dimension(dimension).min_value


def _metric_specs(names: Sequence[str], *, k: int, rubric: Rubric) -> list[MetricSpec]:
    if isinstance(names, str) or not names:
        raise ComparisonError("Choose at least one metric.")
    specs: list[MetricSpec] = []
    for raw in names:
        name = str(raw).replace("@k", f"@{k}") if isinstance(raw, str) else raw
        try:
            spec = parse_metric(name)
        except MetricNameError as exc:
            raise ComparisonError(str(exc)) from None
        if spec.k > k:
            raise ComparisonError(f"{spec.name}: its k is beyond the comparison's k ({k}); only the top {k} are judged.")
        if spec.dimension and rubric.dimension(spec.dimension) is None:
            raise ComparisonError(f"{spec.name}: the rubric has no dimension {spec.dimension!r} "
                                  f"(it has {', '.join(rubric.keys)}).")
        if spec not in specs:
            specs.append(spec)
    return specs


def _thresholds(raw: Mapping[str, float] | None, specs: list[MetricSpec], k: int) -> dict[str, float]:
    given = {str(key).replace("@k", f"@{k}"): value for key, value in (raw or {}).items()}
    names = {s.name for s in specs}
    unknown = sorted(set(given) - names)
    if unknown:
        raise ComparisonError(f"Thresholds for metrics the comparison does not compute: {', '.join(unknown)}.")
    out = {}
    for spec in specs:
        value = given.get(spec.name, DEFAULT_THRESHOLDS[spec.kind])
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ComparisonError(f"The threshold of {spec.name} must be a number, not {value!r}.") from None
        if not math.isfinite(number):
            raise ComparisonError(f"The threshold of {spec.name} must be a finite number.")
        out[spec.name] = abs(number)
    return out


def _shared_query_ids(control: Variant, treatment: Variant, snapshot: dict[str, Any]) -> set[int]:
    entries = ResultEntry.objects.filter(id__lte=int(snapshot["max_entry_id"]))
    served = [set(entries.filter(variant=v).values_list("query_id", flat=True).distinct()) for v in (control, treatment)]
    return served[0] & served[1]


def _sample_for(*, surface: Surface, control: Variant, treatment: Variant, k: int, spec: QuerySpec,
                name: str, user: AbstractUser | None) -> Sample:
    """The traffic sample of the comparison's items (both variants' top k of each compared query)."""
    params: dict[str, Any] = {"k": k, "control": control.name, "treatment": treatment.name}
    if spec.sample is None:
        if spec.queries is not None:
            params["queries"] = spec.queries
        try:
            return sample_draw(surface=surface, name=name, strategy="union_top_k", params=params, seed=spec.seed,
                               user=None)
        except TrafficError as exc:
            raise ComparisonError(str(exc)) from None
    if spec.sample.surface_id != surface.pk:
        raise ComparisonError("That sample belongs to another surface.")
    snapshot = traffic_snapshot(surface=surface)
    wanted = set(Item.objects.filter(sample_items__sample=spec.sample).values_list("query_id", flat=True))
    queries = wanted & _shared_query_ids(control, treatment, snapshot)
    if not queries:
        raise ComparisonError(f"No query of sample {spec.sample.name!r} was served by both variants.")
    rows = sorted(set(ResultEntry.objects.filter(
        id__lte=snapshot["max_entry_id"], variant__in=[control, treatment], query_id__in=queries, rank__lte=k,
    ).values_list("query__text_hash", "rank", "item__hash", "item_id")))
    item_ids = list(dict.fromkeys(item_id for *_rest, item_id in rows))
    params["from_sample"] = spec.sample.pk
    sample = Sample.objects.create(name=name[:120], surface=surface, strategy="union_top_k", params=params,
                                   seed=spec.seed, snapshot=snapshot, item_count=len(item_ids))
    SampleItem.objects.bulk_create([SampleItem(sample=sample, item_id=i, position=p)
                                    for p, i in enumerate(item_ids, 1)], batch_size=2000)
    return sample


def comparison_create(*, surface: Surface, control: Variant, treatment: Variant, judge_version: JudgeVersion,
                      k: int = 10, metrics: Sequence[str] = DEFAULT_METRICS,
                      thresholds: Mapping[str, float] | None = None, alpha: float = 0.05,
                      query_sample: QuerySpec | None = None, name: str = "", user: AbstractUser | None,
                      source: str = "ui", min_coverage: float | None = None) -> Comparison:
    if user is not None and not has_role(user, Role.ANALYST):
        raise ComparisonError("Only analysts and admins can run comparisons.")
    if control.surface_id != surface.pk or treatment.surface_id != surface.pk:
        raise ComparisonError("Both variants must belong to the comparison's surface.")
    if control.pk == treatment.pk:
        raise ComparisonError("Compare two different variants.")
    if judge_version.judge.surface_id != surface.pk:
        raise ComparisonError("The judge belongs to another surface.")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ComparisonError(f"k must be a whole number from 1 to {MAX_K}.")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 0.5:
        raise ComparisonError("The significance level must be between 0 and 0.5 (e.g. 0.05).")
    bound = settings.SAGE_COMPARISON_MIN_COVERAGE if min_coverage is None else min_coverage
    if not 0 <= bound <= 1:
        raise ComparisonError("The coverage bound is a share from 0 to 1.")
    spec = query_sample or QuerySpec()
    if spec.queries is not None and (isinstance(spec.queries, bool) or not isinstance(spec.queries, int)
                                     or spec.queries < MIN_QUERIES):
        raise ComparisonError(f"Compare at least {MIN_QUERIES} queries.")
    rubric = judge_version.policy_version.parsed_rubric()
    specs = _metric_specs(metrics, k=k, rubric=rubric)
    limits = _thresholds(thresholds, specs, k)
    label = name.strip()[:120] or f"{treatment.name} vs {control.name}"
    with transaction.atomic():
        sample = _sample_for(surface=surface, control=control, treatment=treatment, k=k, spec=spec,
                             name=f"comparison: {label}", user=user)
        run = None
        if judge_version.backend != JudgeVersion.Backend.IMPORTED:
            try:
                run = judge_run_start(version=judge_version, sample=sample, user=user)
            except JudgeError as exc:
                raise ComparisonError(str(exc)) from None
        comparison = Comparison.objects.create(
            name=label, surface=surface, control=control, treatment=treatment, judge_version=judge_version,
            sample=sample, judge_run=run, k=k, metrics=[s.name for s in specs], thresholds=limits, alpha=float(alpha),
            min_coverage=float(bound), query_spec=spec.as_json(), treatment_ramp=treatment.ramp_percent,
            source=source[:20], created_by=user if user is not None and user.is_authenticated else None,
            status=Comparison.Status.JUDGING if run is not None else Comparison.Status.QUEUED,
        )
        transaction.on_commit(lambda: _queue_refresh(comparison.pk))
    return comparison


def _queue_refresh(comparison_id: int, countdown: float = 0) -> None:
    from .tasks import comparison_refresh_task

    comparison_refresh_task.apply_async((comparison_id,), countdown=countdown)


# --- computing -------------------------------------------------------------------------------

def comparison_fail(*, comparison_id: int, reason: str) -> bool:
    """End an unfinished comparison as failed (a task that raised, or its run failed)."""
    return _finish(comparison_id, Comparison.Status.FAILED, reason, None)


def _finish(comparison_id: int, status: str, message: str, results: dict | None) -> bool:
    fields: dict[str, Any] = {"status": status, "message": message[:4000], "finished_at": timezone.now()}
    if results is not None:
        fields["results"] = results
    # Only an unfinished comparison ends, once: a second refresh or a redelivered task changes nothing.
    return Comparison.objects.filter(pk=comparison_id, status__in=Comparison.ACTIVE).update(**fields) == 1


def comparison_refresh(*, comparison_id: int) -> Comparison:
    """Idempotent: when the comparison's judging has ended, compute and store its results."""
    comparison = Comparison.objects.select_related("judge_version__policy_version", "judge_run").get(pk=comparison_id)
    if comparison.status in Comparison.ENDED:
        return comparison
    run = comparison.judge_run
    if run is not None:
        if run.is_active:
            Comparison.objects.filter(pk=comparison_id, status=Comparison.Status.QUEUED).update(
                status=Comparison.Status.JUDGING)
            comparison.refresh_from_db()
            return comparison
        if run.status in (JudgeRun.Status.FAILED, JudgeRun.Status.CANCELLED):
            _finish(comparison_id, Comparison.Status.FAILED,
                    f"The judge run #{run.pk} {run.get_status_display().lower()}: {run.message}".strip(), None)
            comparison.refresh_from_db()
            return comparison
    status, message, results = comparison_results(comparison)
    _finish(comparison_id, status, message, results)
    comparison.refresh_from_db()
    return comparison


def comparison_rankings(comparison: Comparison, *, only_query: int | None = None
                        ) -> tuple[dict[int, dict[int, list[int]]], dict[int, str]]:
    """{variant id: {query id: [item ids in rank order]}} of the compared queries, and query texts;
    `only_query`: that one query's lists alone (a query's page must not read every query's lists).

    When a variant's list for a query was imported more than once, the latest import within the
    sample's snapshot is the list compared."""
    sampled = Item.objects.filter(sample_items__sample=comparison.sample)
    if only_query is not None:
        sampled = sampled.filter(query_id=only_query)
    query_ids = set(sampled.values_list("query_id", flat=True))
    entries = ResultEntry.objects.filter(
        id__lte=int(comparison.sample.snapshot.get("max_entry_id", 0)), query_id__in=query_ids,
        variant_id__in=[comparison.control_id, comparison.treatment_id], rank__lte=comparison.k)
    latest = {(v, q): imp for v, q, imp in entries.values("variant_id", "query_id").annotate(
        last=Max("traffic_import_id")).values_list("variant_id", "query_id", "last")}
    lists: dict[int, dict[int, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
    for v, q, imp, rank, item in entries.values_list("variant_id", "query_id", "traffic_import_id", "rank", "item_id"):
        if latest.get((v, q)) == imp:
            lists[v][q].append((rank, item))
    rankings = {v: {q: [item for _rank, item in sorted(rows)] for q, rows in by_q.items()} for v, by_q in lists.items()}
    texts = dict(Query.objects.filter(pk__in=query_ids).values_list("pk", "text"))
    return rankings, texts


def comparison_grades(comparison: Comparison, *, items: Iterable[int] | None = None) -> dict[int, dict[str, int]]:
    """{item id: labels} the comparison's judge gave the sample's items (ok judgments only); `items`:
    those items' alone."""
    if comparison.judge_run_id is not None:
        qs = Judgment.objects.filter(run_id=comparison.judge_run_id, status=Judgment.Status.OK)
    else:
        # An imported judge: the labels imported for these items under this version, latest first.
        qs = Judgment.objects.filter(judge_version_id=comparison.judge_version_id, status=Judgment.Status.OK,
                                     item__sample_items__sample_id=comparison.sample_id).order_by("item_id", "-id")
    if items is not None:
        qs = qs.filter(item_id__in=list(items))
    grades: dict[int, dict[str, int]] = {}
    for item_id, labels in qs.values_list("item_id", "labels"):
        grades.setdefault(item_id, labels)
    return grades


def _human_grades(item_ids: list[int], rubric: Rubric) -> dict[int, dict[str, int]]:
    from calibration.selectors import human_consensus

    out: dict[int, dict[str, int]] = defaultdict(dict)
    for dim in rubric.keys:
        ids, values, _counts = human_consensus(item_ids, dim)
        for item_id, value in zip(ids.tolist(), values.tolist()):
            out[item_id][dim] = int(value)
    return dict(out)


def _metrics_of(rankings: dict[int, list[int]], grades: Mapping[int, Mapping[str, int]], specs: list[MetricSpec],
                pools: dict[int, set[int]], rubric: Rubric) -> dict:
    str_rankings = {str(q): [str(i) for i in items] for q, items in rankings.items()}
    pool = {str(q): {str(i): grades[i] for i in items if i in grades} for q, items in pools.items()}
    return per_query_metrics(str_rankings, pool, metrics=specs, overall=rubric.overall.key,
                             relevant_at=relevant_grade(rubric),
                             defect_at={s.dimension: defect_grade(rubric, s.dimension) for s in specs if s.dimension})


def comparison_results(comparison: Comparison) -> tuple[str, str, dict]:
    """(status, message, results) from the judgments: pure reads and statistics, nothing written."""
    rubric = comparison.judge_version.policy_version.parsed_rubric()
    specs = [parse_metric(name) for name in comparison.metrics]
    rankings, texts = comparison_rankings(comparison)
    control = rankings.get(comparison.control_id, {})
    treatment = rankings.get(comparison.treatment_id, {})
    queries = sorted(set(control) & set(treatment))
    pools = {q: set(control[q]) | set(treatment[q]) for q in queries}
    grades = comparison_grades(comparison)
    c_metrics = _metrics_of({q: control[q] for q in queries}, grades, specs, pools, rubric)
    t_metrics = _metrics_of({q: treatment[q] for q in queries}, grades, specs, pools, rubric)
    shown = sum(c_metrics[str(q)].shown + t_metrics[str(q)].shown for q in queries)
    judged = sum(c_metrics[str(q)].judged + t_metrics[str(q)].judged for q in queries)
    coverage = judged / shown if shown else 0.0
    alpha = comparison.alpha
    results: dict[str, Any] = {
        "metrics": {}, "coverage": coverage, "judged": judged, "shown": shown, "queries": len(queries),
        "alpha": alpha, "correction": CORRECTION.format(n=len(specs), alpha=alpha), "min_coverage": comparison.min_coverage,
        "relevant_at": relevant_grade(rubric), "per_query": [],
    }
    for q in queries:
        results["per_query"].append({
            "query_id": q, "text": texts.get(q, "")[:300],
            "coverage": ((c_metrics[str(q)].judged + t_metrics[str(q)].judged)
                         / max(1, c_metrics[str(q)].shown + t_metrics[str(q)].shown)),
            "control": c_metrics[str(q)].values, "treatment": t_metrics[str(q)].values,
        })
    paired: dict[str, Any] = {}
    for spec in specs:
        both = [q for q in queries if c_metrics[str(q)].values[spec.name] is not None
                and t_metrics[str(q)].values[spec.name] is not None]
        if len(both) < MIN_QUERIES:
            paired[spec.name] = None
            continue
        paired[spec.name] = (both, paired_compare([c_metrics[str(q)].values[spec.name] for q in both],
                                                  [t_metrics[str(q)].values[spec.name] for q in both], alpha=alpha))
    decided = [name for name, value in paired.items() if value is not None]
    adjusted = dict(zip(decided, holm_adjust([paired[n][1].p_value for n in decided])))
    refused = ""
    if coverage < comparison.min_coverage:
        refused = (f"Only {coverage:.0%} of the compared results have a judgment, below the {comparison.min_coverage:.0%} "
                   "a verdict needs: unjudged results would decide it. Resume the judge run, or import the missing labels.")
    human = _ppi_inputs(comparison, rubric, specs, queries, control, treatment, pools, c_metrics, t_metrics)
    for spec in specs:
        value = paired[spec.name]
        row: dict[str, Any] = {"threshold": comparison.thresholds.get(spec.name, DEFAULT_THRESHOLDS[spec.kind]),
                               "higher_is_better": spec.higher_is_better, "ppi": human.get(spec.name)}
        if value is None:
            row.update(control=None, treatment=None, delta=None, ci_low=None, ci_high=None, p_value=None,
                       p_adjusted=None, mde=None, n=0, verdict="inconclusive",
                       reason=f"fewer than {MIN_QUERIES} queries have this metric for both variants")
        else:
            _both, result = value
            row.update(result.as_dict())
            row["p_adjusted"] = adjusted[spec.name]
            row["verdict"] = "inconclusive" if refused else verdict(
                delta=result.delta, p_adjusted=adjusted[spec.name], threshold=row["threshold"],
                higher_is_better=spec.higher_is_better, alpha=alpha)
        results["metrics"][spec.name] = row
    verdicts = [m["verdict"] for m in results["metrics"].values()]
    if refused:
        results["verdict"] = "inconclusive"
        return Comparison.Status.INCONCLUSIVE, refused, results
    if len(queries) < MIN_QUERIES or all(v == "inconclusive" for v in verdicts):
        results["verdict"] = "inconclusive"
        return Comparison.Status.INCONCLUSIVE, f"Only {len(queries)} compared query(ies) have results of both variants.", results
    results["verdict"] = ("regression" if "regression" in verdicts else
                          "improvement" if "improvement" in verdicts else "neutral")
    return Comparison.Status.DONE, "", results


def _ppi_inputs(comparison: Comparison, rubric: Rubric, specs: list[MetricSpec], queries: list[int],
                control: dict, treatment: dict, pools: dict[int, set[int]], c_metrics: dict, t_metrics: dict) -> dict:
    """PPI per metric where humans labelled every compared result of at least MIN_LABELLED queries."""
    item_ids = sorted(set().union(*pools.values())) if pools else []
    humans = _human_grades(item_ids, rubric)
    overall = rubric.overall.key
    labelled = [q for q in queries if all(overall in humans.get(i, {}) for i in pools[q])]
    if len(labelled) < MIN_LABELLED:
        return {}
    hc = _metrics_of({q: control[q] for q in labelled}, humans, specs, {q: pools[q] for q in labelled}, rubric)
    ht = _metrics_of({q: treatment[q] for q in labelled}, humans, specs, {q: pools[q] for q in labelled}, rubric)
    labelled_set = set(labelled)
    out = {}
    for spec in specs:
        def delta(cm, tm, q):
            c, t = cm[str(q)].values[spec.name], tm[str(q)].values[spec.name]
            return None if c is None or t is None else t - c

        pairs = [(delta(hc, ht, q), delta(c_metrics, t_metrics, q)) for q in labelled]
        pairs = [(y, yhat) for y, yhat in pairs if y is not None and yhat is not None]
        unlabelled = [d for q in queries if q not in labelled_set
                      for d in [delta(c_metrics, t_metrics, q)] if d is not None]
        if len(pairs) < MIN_LABELLED:
            continue
        y, yhat = [p[0] for p in pairs], [p[1] for p in pairs]
        result = ppi_mean(y, yhat, unlabelled, alpha=comparison.alpha)
        judge_all = [p[1] for p in pairs] + unlabelled
        target = _judge_only_width(judge_all, comparison.alpha)
        needed = labels_needed(y, yhat, target_width=target, total=len(pairs) + len(unlabelled),
                               alpha=comparison.alpha) if target else None
        row = result.as_dict()
        row.update(target_width=target, queries_needed=needed,
                   more_queries=None if needed is None else max(0, needed - len(pairs)),
                   items_per_query=(sum(len(pools[q]) for q in labelled) / len(labelled)))
        out[spec.name] = row
    return out


def _judge_only_width(values: list[float], alpha: float) -> float | None:
    from scipy.stats import norm

    if len(values) < 2:
        return None
    import statistics

    return 2 * norm.ppf(1 - alpha / 2) * statistics.stdev(values) / math.sqrt(len(values))


# --- human labels for PPI ----------------------------------------------------------------------

def comparison_review_slice(*, comparison: Comparison, queries: int, seed: int, reviewers: Sequence[AbstractUser],
                            overlap: int = 1, user: AbstractUser) -> Any:
    """A review queue over every compared result of a random `queries` of the comparison's queries: a
    random slice whose human labels make the PPI estimates (all or nothing)."""
    import random

    from review.services import ReviewError, review_queue_create

    if not has_role(user, Role.ANALYST):
        raise ComparisonError("Only analysts and admins can send items to review.")
    if comparison.status not in (Comparison.Status.DONE, Comparison.Status.INCONCLUSIVE):
        raise ComparisonError("Send a slice to review once the comparison has results.")
    rankings, _texts = comparison_rankings(comparison)
    control, treatment = rankings.get(comparison.control_id, {}), rankings.get(comparison.treatment_id, {})
    shared = sorted(set(control) & set(treatment))
    if isinstance(queries, bool) or not isinstance(queries, int) or not MIN_LABELLED <= queries <= len(shared):
        raise ComparisonError(f"Choose from {MIN_LABELLED} to {len(shared)} queries.")
    chosen = sorted(random.Random(int(seed)).sample(shared, queries))
    item_ids = list(dict.fromkeys(i for q in chosen for i in control[q] + treatment[q]))
    try:
        with transaction.atomic():
            sample = Sample.objects.create(
                name=f"review slice of comparison #{comparison.pk}"[:120], surface=comparison.surface,
                strategy="comparison_slice", params={"comparison": comparison.pk, "queries": queries},
                seed=int(seed), snapshot=comparison.sample.snapshot, item_count=len(item_ids), created_by=user)
            SampleItem.objects.bulk_create([SampleItem(sample=sample, item_id=i, position=p)
                                            for p, i in enumerate(item_ids, 1)])
            return review_queue_create(name=f"PPI slice: {comparison}"[:120], sample=sample,
                                       policy_version=comparison.judge_version.policy_version, reviewers=reviewers,
                                       overlap=overlap, user=user,
                                       instructions="A random slice of a variant comparison's results: label each "
                                                    "result on its own merits.")
    except ReviewError as exc:
        raise ComparisonError(str(exc)) from None


def comparison_recompute(*, comparison: Comparison, user: AbstractUser) -> Comparison:
    """Compute a finished comparison's results again (new human labels change its PPI estimates)."""
    if not has_role(user, Role.ANALYST):
        raise ComparisonError("Only analysts and admins can recompute comparisons.")
    if comparison.status not in (Comparison.Status.DONE, Comparison.Status.INCONCLUSIVE):
        raise ComparisonError("Only a comparison with results can be recomputed.")
    status, message, results = comparison_results(comparison)
    Comparison.objects.filter(pk=comparison.pk).update(status=status, message=message[:4000], results=results,
                                                       finished_at=timezone.now())
    comparison.refresh_from_db()
    return comparison


def comparisons_sweep() -> list[int]:
    """Refresh every unfinished comparison whose judging ended (a lost refresh task); the ids ended."""
    ended = []
    for pk in Comparison.objects.filter(status__in=Comparison.ACTIVE).values_list("pk", flat=True):
        if comparison_refresh(comparison_id=pk).status in Comparison.ENDED:
            ended.append(pk)
    return ended
