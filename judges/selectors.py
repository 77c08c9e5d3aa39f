"""Reads for the judge pages: run statistics computed in the database and numpy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import numpy as np
from django.core.cache import cache
from django.core.paginator import Page, Paginator
from django.db.models import Count, QuerySet

from .costs import run_cost_per_1k
from .models import Judge, JudgeRun, Judgment

T = TypeVar("T")


def judges_for_index() -> QuerySet[Judge]:
    return Judge.objects.select_related("surface").prefetch_related("versions").annotate(run_count=Count("versions__runs"))


def runs_for_index(limit: int = 30) -> QuerySet[JudgeRun]:
    return JudgeRun.objects.select_related("judge_version__judge", "sample").order_by("-created_at")[:limit]


@dataclass(frozen=True)
class RunStats:
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    judgments_per_s: float | None
    errors_by_kind: list[tuple[str, int]]
    cost_per_1k: Decimal | None  # by the backend's pricing (judges.costs)


# How long a running run's latency percentiles are reused: its page polls every 2 s.
LATENCY_TTL_S = 30
# How long an ended run's figures are kept at most; they are dropped sooner when the run changes.
ENDED_RUN_CACHE_S = 3600
_MISSING = object()


def run_cached(run: JudgeRun, name: str, compute: Callable[[], T], *, active_ttl_s: int | None = None) -> T:
    """`compute()`, kept per process (Django's cache): an ended run's until its counters change (a
    resume and recount), a running one's for `active_ttl_s` (None: computed every time). For figures
    that read all of a big run's judgments, a million rows, on every view of a page otherwise. `name`
    carries whatever else the figure depends on (e.g. the human labels' token). The key holds the
    run's creation time, so a reused id (SQLite after a rollback) cannot match."""
    active = run.is_active
    if active and active_ttl_s is None:
        return compute()
    key = (f"sage:run:{name}:{run.pk}:{run.created_at.timestamp()}:"
           + ("active" if active else f"{run.status}:{run.done_items}"))
    cached = cache.get(key, _MISSING)
    if cached is _MISSING:
        cached = compute()
        cache.set(key, cached, active_ttl_s if active else ENDED_RUN_CACHE_S)
    return cached


def _latency_percentiles(run: JudgeRun) -> tuple[float | None, float | None]:
    """p50 and p95 of the run's own model calls (cache copies took no time). They read every
    judgment's latency (0.8 s for a 1M-item run among 10M judgments), so they are kept per process
    (`run_cached`), a running run's for LATENCY_TTL_S."""
    def compute() -> tuple[float | None, float | None]:
        latencies = np.array(
            Judgment.objects.filter(run=run, cached_from__isnull=True, latency_ms__gt=0)
            .values_list("latency_ms", flat=True), dtype=float,
        )
        return tuple(np.percentile(latencies, [50, 95]).tolist()) if latencies.size else (None, None)

    return run_cached(run, "latency", compute, active_ttl_s=LATENCY_TTL_S)


def run_stats(run: JudgeRun) -> RunStats:
    p50, p95 = _latency_percentiles(run)
    elapsed = run.elapsed_s
    rate = run.done_items / elapsed if elapsed and run.done_items else None
    errors = list(Judgment.objects.filter(run=run, status=Judgment.Status.ERROR).values_list("error_kind")
                  .annotate(n=Count("id")).order_by("-n"))
    cost_per_1k = run_cost_per_1k(run)
    return RunStats(latency_p50_ms=p50, latency_p95_ms=p95, judgments_per_s=rate, errors_by_kind=errors,
                    cost_per_1k=cost_per_1k)


def run_judgments(run: JudgeRun, *, status: str = "", error_kind: str = "") -> QuerySet[Judgment]:
    """A run's judgments in item order, which the unique (run, item) index serves: ordered by id, a
    page of a late run among 10M judgments walked the whole primary key (2.1 s)."""
    qs = Judgment.objects.filter(run=run).select_related("item__query", "item__document")
    if status:
        qs = qs.filter(status=status)
    if error_kind:
        qs = qs.filter(error_kind=error_kind)
    return qs.order_by("item_id")


def run_judgments_page(run: JudgeRun, *, status: str = "", error_kind: str = "", page: Any = None,
                       per_page: int = 50) -> Page:
    """One page of `run_judgments`. An ended run's unfiltered count is its done_items (recounted from
    its judgments when it ended), which saves counting a million rows per view."""
    paginator = Paginator(run_judgments(run, status=status, error_kind=error_kind), per_page)
    if not status and not error_kind and not run.is_active:
        paginator.count = run.done_items
    return paginator.get_page(page)


def promoted_students(surface=None) -> list[tuple[Any, Any, Any]]:
    """(student, surface, decision) for every trained student that may back a judge version on a
    surface (only `surface`, when given), by distill's rule (`judges.services.student_promotion`)."""
    from distill.models import StudentModel
    from policy.models import Surface

    from .services import student_promotion

    candidates = StudentModel.objects.filter(decisions__promoted=True).exclude(model_hash="").distinct().order_by("name")
    surfaces = [surface] if surface is not None else list(Surface.objects.all())
    found = []
    for student in candidates:
        for on in surfaces:
            decision = student_promotion(student, on)
            if decision is not None:
                found.append((student, on, decision))
    return found


def version_promotions(versions) -> dict[int, Any]:
    """{version id: the promotion decision behind its student} for the student versions among
    `versions`: the judge and run pages show an override's reason wherever its labels are used."""
    from .services import student_promotion

    return {v.pk: student_promotion(v.student_model, v.judge.surface) for v in versions if v.student_model_id}
