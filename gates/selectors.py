"""Reads of gates: the run report (API, command, page) and the lists the pages show."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db.models import QuerySet

from sage.roles import Role, has_role

from .models import Gate, GateRun, ScopedToken
from .verdict import Outcome


def absolute(path: str, base_url: str | None = None) -> str:
    base = (settings.SAGE_BASE_URL if base_url is None else base_url).rstrip("/")
    return f"{base}{path}" if base and path.startswith("/") else path


def gate_run_report(run: GateRun, *, comparison=None, outcome: Outcome | None = None,
                    base_url: str | None = None) -> dict[str, Any]:
    """The report CI reads (JSON, JUnit, the API). A run that ended returns what it froze then; a running
    one is read live from its comparison, without writing anything."""
    from .services import gate_run_outcome

    if not run.is_active and run.result and outcome is None:
        report = dict(run.result)
    else:
        comparison = comparison or run.comparison
        outcome = outcome or gate_run_outcome(run, comparison=comparison)
        done, total = comparison.progress if comparison is not None else (0, 0)
        results = (comparison.results or {}) if comparison is not None else {}
        report = {
            "gate": run.gate.name, "run": run.pk, "surface": run.gate.surface.slug,
            "baseline": run.gate.baseline.name, "candidate": run.candidate.name,
            "status": outcome.status if outcome.final or not run.is_active else "running",
            "exit_code": outcome.exit_code, "message": outcome.message,
            "judge_version": str(run.gate.judge_version), "k": run.gate.k, "alpha": run.gate.alpha,
            "min_coverage": run.gate.min_coverage, "coverage": results.get("coverage"),
            "queries": results.get("queries"), "correction": results.get("correction"),
            "progress": {"judged": done, "total": total},
            "metrics": outcome.metrics,
            "comparison": ({"id": comparison.pk, "status": comparison.status, "url": comparison.get_absolute_url()}
                           if comparison is not None else None),
            "url": run.get_absolute_url(),
            "traffic_import": run.traffic_import_id,
            "created_at": run.created_at.isoformat() if run.created_at else None,
        }
    # Links are stored as paths and made absolute when read, so a moved server still links right.
    report["url"] = absolute(report.get("url") or run.get_absolute_url(), base_url)
    if report.get("comparison"):
        report["comparison"] = {**report["comparison"], "url": absolute(report["comparison"]["url"], base_url)}
    report["finished_at"] = run.finished_at.isoformat() if run.finished_at else None
    return report


def gates_for_index() -> QuerySet[Gate]:
    return Gate.objects.select_related("surface", "baseline", "judge_version__judge").order_by("name")


def gate_runs_recent(*, gate: Gate | None = None, limit: int = 50) -> QuerySet[GateRun]:
    runs = GateRun.objects.select_related("gate", "candidate", "token", "created_by", "comparison")
    if gate is not None:
        runs = runs.filter(gate=gate)
    return runs.order_by("-created_at")[:limit]


def tokens_visible_to(user: AbstractUser) -> QuerySet[ScopedToken]:
    """Admins see every token; analysts their own."""
    tokens = ScopedToken.objects.select_related("owner", "surface").order_by("-created_at")
    return tokens if has_role(user, Role.ADMIN) else tokens.filter(owner=user)
