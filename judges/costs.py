"""What judging costs, per 1,000 judgments, by the pricing the backend registry gives each backend.

- "tokens" (an LLM endpoint): the run's token cost (tokens x its version's $/1M prices) over the
  judgments the model made;
- "per_1k" (imported labels): the price per 1,000 judgments set on the version, as paid where they
  were made;
- "hardware" (the distilled student): the seconds the model computed, measured per batch, x
  settings.SAGE_STUDENT_USD_PER_HOUR (the host's $/hour).

Judgments copied from the cache cost nothing and are left out of "per 1k", so a run that reused
most of its items does not look cheaper per judgment than its model is.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Sum

from .core.types import JudgeOutcome
from .models import JudgeRun, JudgeVersion, Judgment

PLACES = Decimal("0.000001")
# Until distill adds the setting: a 2-core CPU host.
DEFAULT_STUDENT_USD_PER_HOUR = 0.10


def student_usd_per_hour() -> Decimal:
    return Decimal(str(getattr(settings, "SAGE_STUDENT_USD_PER_HOUR", DEFAULT_STUDENT_USD_PER_HOUR)))


def student_cost_per_1k(seconds_per_1k: float) -> Decimal:
    """USD for 1,000 judgments by a model that takes `seconds_per_1k` seconds of its host for them."""
    return (Decimal(str(seconds_per_1k)) * student_usd_per_hour() / Decimal(3600)).quantize(PLACES)


def judgment_cost(version: JudgeVersion, outcome: JudgeOutcome) -> Decimal:
    """The cost of one judgment as its run's accounting sums it."""
    pricing = version.spec.pricing
    if pricing == "hardware":
        return Decimal(str(outcome.latency_ms / 1000)) * student_usd_per_hour() / Decimal(3600)
    if pricing == "per_1k":
        return (version.price_per_1k or Decimal(0)) / Decimal(1000)
    return version.cost(outcome.tokens_in, outcome.tokens_out)


def seconds_per_1k(run: JudgeRun) -> float | None:
    """Model seconds per 1,000 judgments the run's model made (not copied from the cache)."""
    made = Judgment.objects.filter(run=run, cached_from__isnull=True).aggregate(n=Count("id"), ms=Sum("latency_ms"))
    if not made["n"] or made["ms"] is None:
        return None
    return made["ms"] / made["n"]  # ms per judgment = s per 1,000 judgments


def run_cost_per_1k(run: JudgeRun) -> Decimal | None:
    """USD per 1,000 judgments of this run; None when it cannot be told (no price set, nothing judged)."""
    version = run.judge_version
    pricing = version.spec.pricing
    if pricing == "per_1k":
        return version.price_per_1k
    if pricing == "hardware":
        seconds = seconds_per_1k(run)
        return None if seconds is None else student_cost_per_1k(seconds)
    made = Judgment.objects.filter(run=run, cached_from__isnull=True).aggregate(n=Count("id"), cost=Sum("cost"))
    if not made["n"]:
        return None
    return (made["cost"] * 1000 / made["n"]).quantize(PLACES)


@dataclass(frozen=True)
class TeacherCost:
    """A teacher run of a student's training set, its cost per 1k, and how many times the student's it is."""

    run: JudgeRun
    per_1k: Decimal | None
    ratio: float | None  # teacher / student; None when either is unknown or the student's is 0


def teacher_costs(run: JudgeRun, student_per_1k: Decimal | None = None) -> list[TeacherCost]:
    """For a student's run: the teacher runs its training set learned from, each with its cost per 1k
    beside this run's. Empty for a run of another backend."""
    student = run.judge_version.student_model
    if student is None:
        return []
    if student_per_1k is None:
        student_per_1k = run_cost_per_1k(run)
    run_ids = student.training_set.sources.filter(judge_run__isnull=False).values_list("judge_run", flat=True)
    costs = []
    for teacher in JudgeRun.objects.filter(pk__in=run_ids).select_related("judge_version__judge").order_by("pk"):
        per_1k = run_cost_per_1k(teacher)
        ratio = float(per_1k / student_per_1k) if per_1k is not None and student_per_1k else None
        costs.append(TeacherCost(run=teacher, per_1k=per_1k, ratio=ratio))
    return costs
