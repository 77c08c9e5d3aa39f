"""Reads of the distill app, and what other apps ask of it (judges: may this student back a judge
version on this surface, where are its files)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Count

from .models import PromotionBar, PromotionDecision, StudentEvaluation, StudentModel, TrainingSet


def student_promotion(student: StudentModel, surface) -> PromotionDecision | None:
    """The decision that lets `student` back judge versions on `surface` — the latest decision there,
    when it promoted (an admin's override included: `.override`, `.reason`) — else None."""
    latest = PromotionDecision.objects.filter(student=student, surface=surface).order_by("-decided_at", "-id").first()
    return latest if latest is not None and latest.promoted else None


def student_model_path(student: StudentModel) -> Path:
    """The absolute folder of the student's model (manifest.json, weights, tokenizer)."""
    return (Path(settings.DATA_DIR) / student.model_dir).resolve()


def promotion_bar(surface):
    """The bar of a surface: its PromotionBar row, else the settings' default (alpha, SAGE_DISTILL_PROMOTION_RATIO)."""
    from .services import Bar

    row = PromotionBar.objects.filter(surface=surface).first()
    if row is not None:
        return Bar(metric=row.metric, ratio=row.ratio, source="surface")
    return Bar(metric="alpha", ratio=settings.SAGE_DISTILL_PROMOTION_RATIO, source="settings")


def training_sets_for_index(limit: int = 50):
    return (TrainingSet.objects.select_related("surface", "policy_version__policy")
            .annotate(student_count=Count("students")).order_by("-created_at")[:limit])


def students_for_index(limit: int = 50):
    return StudentModel.objects.select_related("training_set").order_by("-created_at")[:limit]


def latest_evaluation(student: StudentModel) -> StudentEvaluation | None:
    return student.evaluations.order_by("-created_at", "-id").first()


def promotion_note(student: StudentModel | None, surface) -> dict[str, Any] | None:
    """What a page that shows this student's labels must say about its promotion: for the
    `distill/_promotion_note.html` snippet (judges' run pages include it). None when there is no student."""
    if student is None:
        return None
    decision = student_promotion(student, surface)
    return {"student": student, "decision": decision,
            "override": bool(decision and decision.override), "promoted": decision is not None}


def cost_table(student: StudentModel, evaluation: StudentEvaluation | None) -> dict[str, Any] | None:
    """Cost per 1k judgments: each teacher run (its tokens x prices, or its imported price) beside the
    student (measured seconds x SAGE_STUDENT_USD_PER_HOUR), and the ratio. From judges.costs when C's
    module is there; else the student side alone, from the same formula."""
    if evaluation is None or evaluation.seconds_per_1k is None:
        return None
    try:
        from judges.costs import run_cost_per_1k, student_cost_per_1k
    except ImportError:  # judges.costs not there yet: the student's side by the same formula
        run_cost_per_1k = None

        def student_cost_per_1k(seconds_per_1k: float) -> Decimal:
            return (Decimal(str(seconds_per_1k)) * Decimal(str(settings.SAGE_STUDENT_USD_PER_HOUR))
                    / Decimal(3600)).quantize(Decimal("0.000001"))
    student_cost = student_cost_per_1k(evaluation.seconds_per_1k)
    rows = []
    for source in student.training_set.sources.filter(kind="judge_run").select_related("judge_run__judge_version__judge"):
        run = source.judge_run
        teacher = run_cost_per_1k(run) if run_cost_per_1k else None
        ratio = (teacher / student_cost) if teacher is not None and student_cost else None
        rows.append({"run": run, "cost": teacher, "ratio": ratio})
    return {"student": student_cost, "seconds_per_1k": evaluation.seconds_per_1k, "teachers": rows,
            "usd_per_hour": settings.SAGE_STUDENT_USD_PER_HOUR, "from_judges": run_cost_per_1k is not None}


def evaluation_rows(evaluation: StudentEvaluation | None) -> list[dict[str, Any]]:
    """The evaluation table: per dimension, student-human, each teacher-human and student-teacher, with CIs."""
    from sage_stats.agreement import few_queries_warning

    if evaluation is None:
        return []
    names = evaluation.figures.get("teachers", {})
    rows = []
    for key, entry in (evaluation.figures.get("dimensions") or {}).items():
        pairs = [("student vs humans", entry["student_human"])]
        pairs += [(f"teacher {names.get(run, run)} vs humans", fig) for run, fig in entry["teacher_human"].items()]
        pairs += [(f"student vs teacher {names.get(run, run)}", fig) for run, fig in entry["student_teacher"].items()]
        for label, fig in pairs:
            rows.append({"dimension": key, "label": label, "n": fig["n"], "queries": fig["n_queries"],
                         "alpha": fig["estimates"].get("alpha"), "alpha_ci": fig["ci"].get("alpha"),
                         "kappa_linear": fig["estimates"].get("kappa_linear"), "kappa_linear_ci": fig["ci"].get("kappa_linear"),
                         "kappa": fig["estimates"].get("kappa"), "exact": fig["estimates"].get("exact"),
                         "reason": fig.get("reason"), "student_side": label.startswith("student vs humans"),
                         "warning": few_queries_warning(fig["n_queries"])})
    return rows
