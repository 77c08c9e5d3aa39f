"""Writes of gates: scoped tokens, gates, and gate runs (start, refresh, fail, sweep).

A gate run is a thin wrapper around a comparison: `gate_run_start` imports the candidate's traffic
(optional), starts the comparison and records the run; `gate_run_refresh` — called by the follow
task, the beat sweep and `manage.py sage_gate` — advances the comparison and, once it has ended,
freezes the report and exit code with a conditional UPDATE, so two refreshers never both finish it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from sage.params import is_key
from sage.roles import Role, has_role
from traffic.models import TrafficImport, Variant
from traffic.services import TrafficBusy, TrafficError, traffic_import, variant_create

from .models import Gate, GateRun, Scope, ScopedToken
from .tokens import token_generate, token_hash
from .verdict import ERROR, Outcome, gate_outcome


class GateError(Exception):
    """A problem the caller can fix; the message is shown as is. `code` is the API's error code."""

    def __init__(self, message: str, *, code: str = "bad_request", status: int = 400,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.status, self.details = code, status, details


def _require_analyst(user: AbstractUser | None, doing: str) -> None:
    if user is not None and not has_role(user, Role.ANALYST):
        raise GateError(f"Only analysts and admins can {doing}.", code="forbidden", status=403)


# --- tokens -------------------------------------------------------------------------------------

def token_create(*, owner: AbstractUser, name: str, scopes: Iterable[str], surface=None,
                 expires_at: datetime | None = None, user: AbstractUser | None) -> tuple[ScopedToken, str]:
    """Returns the token and its secret, which is never stored and cannot be shown again.

    Analysts create tokens for themselves; admins for any analyst. A token never grants more than
    its owner holds: the API checks the owner's role on every request as well.
    """
    if user is not None and user.pk != owner.pk and not has_role(user, Role.ADMIN):
        raise GateError("Only admins create tokens for someone else.", code="forbidden", status=403)
    _require_analyst(user, "create API tokens")
    if not has_role(owner, Role.ANALYST):
        raise GateError(f"{owner.get_username()} is not an analyst: their token could do nothing.")
    name = name.strip()
    if not name:
        raise GateError("Name the token after what uses it, e.g. 'github-ci'.")
    scopes = sorted(set(scopes))
    unknown = [s for s in scopes if s not in Scope.values]
    if unknown or not scopes:
        raise GateError(f"Choose scopes among {', '.join(Scope.values)}" + (f"; unknown: {', '.join(unknown)}."
                                                                           if unknown else "."))
    if expires_at is not None and expires_at <= timezone.now():
        raise GateError("The expiry date is in the past.")
    public, secret = token_generate()
    token = ScopedToken.objects.create(name=name[:100], owner=owner, scopes=scopes, surface=surface, prefix=public,
                                       secret_hash=token_hash(secret), expires_at=expires_at, created_by=user)
    return token, secret


def token_revoke(*, token: ScopedToken, user: AbstractUser | None) -> bool:
    """Revoke at once; False when it was already revoked. Owners revoke their own, admins any."""
    if user is not None and user.pk != token.owner_id and not has_role(user, Role.ADMIN):
        raise GateError("Only the token's owner or an admin can revoke it.", code="forbidden", status=403)
    return ScopedToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()) == 1


# --- gates --------------------------------------------------------------------------------------

GATE_FIELDS = ("name", "description", "surface", "baseline", "judge_version", "k", "metrics", "alpha",
               "sample_kind", "sample_size", "sample_seed", "sample", "min_coverage", "timeout_s")


def _gate_check(gate: Gate) -> None:
    try:
        gate.full_clean(validate_unique=False)
    except ValidationError as exc:
        raise GateError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
    problems = []
    if gate.baseline.surface_id != gate.surface_id:
        problems.append(f"the baseline {gate.baseline.name!r} serves another surface")
    if gate.judge_version.judge.surface_id != gate.surface_id:
        problems.append(f"the judge {gate.judge_version} judges another surface")
    if not isinstance(gate.metrics, dict) or not gate.metrics:
        problems.append("name at least one metric with its threshold")
    else:
        problems += _metrics_check(gate)
    if gate.sample_kind == Gate.SampleKind.RANDOM and not gate.sample_size:
        problems.append("a random subset needs its number of queries")
    if gate.sample_kind == Gate.SampleKind.SAMPLE and (gate.sample is None or gate.sample.surface_id != gate.surface_id):
        problems.append("choose a traffic sample of the gate's surface")
    if problems:
        raise GateError("The gate was not saved: " + "; ".join(problems) + ".")


def _metrics_check(gate: Gate) -> list[str]:
    """Normalize the gate's metric names ("ndcg@k" → "ndcg@10") and check them the way the comparison
    will, so a bad name is refused when the gate is saved rather than in CI."""
    from sage_stats.ranking import MetricNameError, parse_metric

    problems, normalized = [], {}
    rubric = gate.judge_version.policy_version.parsed_rubric()
    for raw, threshold in gate.metrics.items():
        name = str(raw).strip().replace("@k", f"@{gate.k}")
        try:
            spec = parse_metric(name)
        except MetricNameError as exc:
            problems.append(str(exc).rstrip("."))
            continue
        if spec.k > gate.k:
            problems.append(f"{spec.name}: its k is beyond the gate's k ({gate.k})")
        if spec.dimension and rubric.dimension(spec.dimension) is None:
            problems.append(f"{spec.name}: the judge's rubric has no dimension {spec.dimension!r}")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not -1 <= threshold <= 1:
            problems.append(f"{spec.name}: the threshold is the size of a change that matters, e.g. -0.02")
        normalized[spec.name] = threshold
    gate.metrics = normalized
    return problems


def gate_create(*, user: AbstractUser | None, **fields: Any) -> Gate:
    _require_analyst(user, "create gates")
    gate = Gate(created_by=user, **{k: v for k, v in fields.items() if k in GATE_FIELDS})
    if not is_key(gate.name or ""):
        raise GateError("A gate's name is letters, digits and '-' (CI calls it by that name).")
    _gate_check(gate)
    try:
        with transaction.atomic():
            gate.save()
    except IntegrityError:
        raise GateError(f"A gate named {gate.name!r} exists already.") from None
    return gate


def gate_update(*, gate: Gate, user: AbstractUser | None, **fields: Any) -> Gate:
    """Change a gate's recipe. Runs that already ended keep the report they froze."""
    _require_analyst(user, "edit gates")
    for key, value in fields.items():
        if key in GATE_FIELDS and key != "name":
            setattr(gate, key, value)
    _gate_check(gate)
    gate.save()
    return gate


# --- runs ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunStart:
    run: GateRun
    created: bool  # False: a retry with the same client key found the earlier run
    traffic_import: TrafficImport | None = None
    traffic_created: bool = False


def _import_candidate_traffic(*, gate: Gate, candidate: str, traffic: IO[bytes], filename: str, fmt: str | None,
                              user: AbstractUser | None) -> tuple[TrafficImport, bool]:
    """Import the candidate's traffic; a candidate variant the surface does not know yet is created
    for it, and removed again when the file is refused (all-or-nothing)."""
    created_variant = None
    if not Variant.objects.filter(surface=gate.surface, name=candidate).exists():
        try:
            created_variant = variant_create(surface=gate.surface, name=candidate, role=Variant.Role.TREATMENT,
                                             description=f"created by gate {gate.name}", user=user)
        except (TrafficError, ValidationError) as exc:
            raise GateError(f"Cannot create the candidate variant {candidate!r}: "
                            f"{'; '.join(exc.messages) if isinstance(exc, ValidationError) else exc}") from None
    try:
        result = traffic_import(surface=gate.surface, source=traffic, filename=filename, fmt=fmt, user=user)
    except TrafficBusy as exc:
        if created_variant is not None:
            created_variant.delete()
        raise GateError(str(exc), code="busy", status=503, details={"retry_after": exc.retry_after}) from None
    except TrafficError as exc:
        if created_variant is not None:
            created_variant.delete()
        raise GateError(f"The candidate's traffic was refused, no run started: {exc}", code="invalid_traffic",
                        status=422, details={"line": exc.line}) from None
    return result.traffic_import, result.created


def _query_sample(gate: Gate):
    """The gate's sample spec in the form comparison_create takes."""
    from comparisons.services import QuerySpec

    if gate.sample_kind == Gate.SampleKind.RANDOM:
        return QuerySpec(queries=gate.sample_size, seed=gate.sample_seed)
    if gate.sample_kind == Gate.SampleKind.SAMPLE:
        return QuerySpec(sample=gate.sample)
    return QuerySpec(seed=gate.sample_seed)


def gate_run_start(*, gate: Gate, candidate: str, user: AbstractUser | None, source: str,
                   token: ScopedToken | None = None, traffic: IO[bytes] | None = None, filename: str = "",
                   fmt: str | None = None, client_key: str = "") -> RunStart:
    """Start a run of `gate` for the variant named `candidate`, first importing its traffic when given.

    Refusals raise GateError and start nothing; a traffic file that was imported before a later
    refusal stays imported (importing the same file again is a no-op). A repeated `client_key`
    returns the run that key started."""
    from comparisons.services import ComparisonError, comparison_create

    _require_analyst(user, "run gates")
    client_key = client_key.strip()[:100]
    if client_key:
        earlier = GateRun.objects.filter(gate=gate, client_key=client_key).first()
        if earlier is not None:
            return RunStart(earlier, created=False, traffic_import=earlier.traffic_import)
    if not candidate or not is_key(candidate):
        raise GateError("Name the candidate variant: letters, digits, '-' and '_'.", code="bad_candidate")
    imported, imported_new = None, False
    if traffic is not None:
        imported, imported_new = _import_candidate_traffic(gate=gate, candidate=candidate, traffic=traffic,
                                                           filename=filename, fmt=fmt, user=user)
    variant = Variant.objects.filter(surface=gate.surface, name=candidate).first()
    if variant is None:
        raise GateError(f"{gate.surface.name} has no variant {candidate!r}: send its traffic file with the run, or "
                        "import it first.", code="unknown_candidate", status=404)
    if variant.pk == gate.baseline_id:
        raise GateError(f"{candidate!r} is the gate's baseline; a gate compares another variant with it.",
                        code="bad_candidate")
    try:
        with transaction.atomic():
            comparison = comparison_create(
                surface=gate.surface, control=gate.baseline, treatment=variant, judge_version=gate.judge_version,
                k=gate.k, metrics=list(gate.metrics), thresholds=dict(gate.metrics), alpha=gate.alpha,
                query_sample=_query_sample(gate), name=f"gate {gate.name}: {candidate}", user=user, source="gate",
                min_coverage=gate.min_coverage)
            run = GateRun.objects.create(
                gate=gate, candidate=variant, comparison=comparison, traffic_import=imported, source=source,
                token=token, client_key=client_key, created_by=user,
                deadline_at=timezone.now() + timedelta(seconds=gate.timeout_s))
            transaction.on_commit(lambda: _follow_later(run.pk))
    except ComparisonError as exc:
        raise GateError(f"The comparison was refused, no run started: {exc}", code="comparison_refused",
                        status=422) from None
    except IntegrityError:
        # The same client key raced in from a retried request: the first one's run counts.
        earlier = GateRun.objects.filter(gate=gate, client_key=client_key).first()
        if not client_key or earlier is None:
            raise
        return RunStart(earlier, created=False, traffic_import=earlier.traffic_import)
    return RunStart(run, created=True, traffic_import=imported, traffic_created=imported_new)


def _follow_later(run_id: int) -> None:
    from .tasks import gate_run_follow_task

    gate_run_follow_task.apply_async((run_id,), countdown=settings.SAGE_GATE_POLL_S)


def gate_run_outcome(run: GateRun, *, comparison=None) -> Outcome:
    """What the run's comparison says now, by the gate's rules (a read: nothing is written)."""
    comparison = comparison or run.comparison
    if comparison is None:
        return Outcome(ERROR, run.message or "The run has no comparison.")
    return gate_outcome(comparison_status=comparison.status, comparison_message=comparison.message,
                        results=comparison.results, thresholds=run.gate.metrics,
                        min_coverage=run.gate.min_coverage)


def _finish(run: GateRun, outcome: Outcome, report: Mapping[str, Any]) -> bool:
    changed = GateRun.objects.filter(pk=run.pk, status=GateRun.Status.RUNNING).update(
        status=outcome.status, exit_code=outcome.exit_code, message=outcome.message[:4000], result=dict(report),
        finished_at=timezone.now())
    return changed == 1


def gate_run_refresh(*, run_id: int) -> GateRun:
    """Advance the run's comparison and, once it has ended (or the run's deadline passed), freeze
    the report. Idempotent; a run that ended is returned unchanged."""
    from comparisons.services import comparison_refresh

    from .selectors import gate_run_report

    run = GateRun.objects.select_related("gate", "candidate", "comparison").get(pk=run_id)
    if not run.is_active:
        return run
    comparison = comparison_refresh(comparison_id=run.comparison_id) if run.comparison_id else None
    run.comparison = comparison
    outcome = gate_run_outcome(run, comparison=comparison)
    if not outcome.final and timezone.now() >= run.deadline_at:
        outcome = Outcome(ERROR, f"Timed out: the comparison was still {comparison.status if comparison else 'missing'} "
                                 f"after {run.gate.timeout_s} s (it goes on; a new run reuses its judgments).",
                          outcome.metrics)
    if outcome.final:
        _finish(run, outcome, gate_run_report(run, comparison=comparison, outcome=outcome))
        run.refresh_from_db()
    return run


def gate_run_fail(*, run_id: int, reason: str) -> bool:
    """End a running run as an error (a timeout in the command, a task that gave up)."""
    from .selectors import gate_run_report

    run = GateRun.objects.select_related("gate", "candidate", "comparison").get(pk=run_id)
    outcome = Outcome(ERROR, reason)
    return _finish(run, outcome, gate_run_report(run, outcome=outcome))


def gate_runs_sweep() -> int:
    """Refresh every running gate run (beat): a follow task lost with its worker leaves none behind."""
    count = 0
    for run_id in GateRun.objects.filter(status=GateRun.Status.RUNNING).values_list("pk", flat=True):
        if not gate_run_refresh(run_id=run_id).is_active:
            count += 1
    return count
