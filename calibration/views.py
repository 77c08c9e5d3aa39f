from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from judges.models import JudgeRun
from judges.selectors import version_promotions
from policy.models import Policy
from sage.params import choice_param, int_param, parse_int
from sage.roles import Role, has_role

from .charts import METRIC_TITLES
from .dashboard import (
    JUDGED_STATUSES,
    METRICS,
    calibration_overview,
    cell_items,
    clause_breakdown,
    confusion_charts,
    consensus_description,
    human_ceiling,
    most_recently_judged,
    run_agreement,
    run_comparison,
    segment_breakdown,
    triage_queryset,
)
from .models import Disagreement, TriageDecision
from .services import (
    CalibrationError,
    agreement_snapshots,
    calibration_rejudge,
    disagreements_refresh,
    triage_resolve,
)


def _metric(request: HttpRequest) -> str:
    metric = request.GET.get("metric", "kappa_quadratic")
    return metric if metric in METRICS else "kappa_quadratic"


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    policies = list(Policy.objects.select_related("surface"))
    policy_id = request.GET.get("policy", "")
    # Without a choice, open where the latest work is: the policy most recently judged.
    policy = next((p for p in policies if str(p.pk) == policy_id), None) or most_recently_judged(policies)
    metric = _metric(request)
    context = {"policies": policies, "policy": policy, "metric": metric, "metrics": [(m, METRIC_TITLES[m]) for m in METRICS]}
    if policy is not None:
        context.update(calibration_overview(policy, metric=metric))
    return render(request, "calibration/index.html", context)


@require_GET
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(JudgeRun.objects.select_related("judge_version__judge", "judge_version__policy_version__policy",
                                                            "sample"), pk=pk)
    metric = _metric(request)
    snapshots = run_agreement(run)
    rubric = run.judge_version.policy_version.parsed_rubric()
    return render(request, "calibration/run.html", {
        "run": run, "snapshots": [(s, rubric.dimension(s.dimension)) for s in snapshots], "metric": metric,
        "ceiling": human_ceiling([run]), "consensus": consensus_description(),
        "metric_title": METRIC_TITLES[metric],
        "charts": confusion_charts(run, snapshots), "segments": segment_breakdown(run, metric=metric),
        "clauses": clause_breakdown(run), "open_disagreements": run.disagreements.filter(status="open").count(),
        "can_triage": has_role(request.user, Role.REVIEWER), "can_rejudge": has_role(request.user, Role.ANALYST)
        and run.judge_version.spec.has_model,
        "drill_base": reverse("calibration:cell", args=[run.pk]),
        "other_runs": JudgeRun.objects.filter(sample=run.sample, status__in=JUDGED_STATUSES).exclude(pk=run.pk)
        .select_related("judge_version__judge")[:20],
        # A student's labels: the decision that allows them (an override's reason) is shown with them.
        "student_model": run.judge_version.student_model,
        "promotion": version_promotions([run.judge_version]).get(run.judge_version.pk),
    })


@require_GET
def cell(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(JudgeRun, pk=pk)
    a, b = int_param(request.GET, "a", minimum=-1000, maximum=1000), int_param(request.GET, "b", minimum=-1000, maximum=1000)
    if a is None or b is None:
        messages.error(request, "Pick a cell of the confusion matrix.")
        return redirect("calibration:run", pk=pk)
    rubric = run.judge_version.policy_version.parsed_rubric()
    dimension = choice_param(request.GET, "dimension", [d.key for d in rubric.dimensions], rubric.overall.key)
    return render(request, "calibration/cell.html", {"run": run, "dimension": dimension, "a": a, "b": b,
                                                     "rows": cell_items(run, dimension=dimension, judge_value=a, human_value=b),
                                                     "consensus": consensus_description()})


@require_POST
def find_disagreements(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(JudgeRun, pk=pk)
    if not has_role(request.user, Role.REVIEWER):
        raise PermissionDenied("Only reviewers and admins triage disagreements.")
    try:
        distance = int_param(request.POST, "min_distance", 1)
        if not 1 <= distance <= 100:
            raise CalibrationError("The minimum distance is a whole number of levels, 1 or more.")
        created = disagreements_refresh(run=run, min_distance=distance)
        agreement_snapshots(run=run)  # a POST may write: store what the run's pages would compute
    except (ValueError, CalibrationError) as exc:
        messages.error(request, str(exc))
        return redirect("calibration:run", pk=pk)
    messages.success(request, f"{created} new disagreement(s) at distance ≥ {distance} sent to triage.")
    return redirect(f"{reverse('calibration:triage')}?run={pk}")


@require_GET
def triage(request: HttpRequest) -> HttpResponse:
    filters = {k: request.GET.get(k, "") for k in ("run", "dimension", "min_distance", "clause", "segment")}
    filters["status"] = request.GET.get("status", "open")
    qs = triage_queryset(run_id=filters["run"], dimension=filters["dimension"], min_distance=filters["min_distance"],
                         clause=filters["clause"], segment=filters["segment"], status=filters["status"])
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    return render(request, "calibration/triage.html", {
        "page": page, "filters": filters, "runs": JudgeRun.objects.filter(disagreements__isnull=False).distinct()
        .select_related("judge_version__judge"),
        "dimensions": sorted(set(Disagreement.objects.values_list("dimension", flat=True))),
        "segments": sorted({s for s in Disagreement.objects.values_list("item__query__segment", flat=True) if s}),
        "consensus": consensus_description(),
    })


def triage_detail(request: HttpRequest, pk: int) -> HttpResponse:
    d = get_object_or_404(Disagreement.objects.select_related(
        "item__query", "item__document", "judgment", "run__judge_version__judge",
        "run__judge_version__policy_version__policy"), pk=pk)
    version = d.run.judge_version.policy_version
    latest = version.policy.latest_published()
    error = None
    if request.method == "POST":
        if not has_role(request.user, Role.REVIEWER):
            raise PermissionDenied("Only reviewers and admins triage disagreements.")
        try:
            corrected = request.POST.get("corrected_value", "")
            decision = triage_resolve(
                disagreement=d, resolution=request.POST.get("resolution", ""), note=request.POST.get("note", ""),
                user=request.user, clause=request.POST.get("clause", ""),
                accept_precedent=bool(request.POST.get("accept_precedent")), amendment=request.POST.get("amendment", ""),
                corrected_value=parse_int(corrected, minimum=-1000, maximum=1000))
        except CalibrationError as exc:
            error = str(exc)
        except Exception as exc:  # a rule of another app (precedent, label, policy) refused the write
            error = f"Nothing was changed: {exc}"
        else:
            messages.success(request, f"Resolved as “{decision.get_resolution_display()}”.")
            nxt = Disagreement.objects.filter(run=d.run, status="open").order_by("-distance", "id").first()
            return redirect("calibration:triage-detail", pk=nxt.pk) if nxt else redirect(f"{reverse('calibration:triage')}?run={d.run_id}")
    from review.models import HumanLabel

    humans = (HumanLabel.objects.filter(item=d.item, is_latest=True).select_related("reviewer", "policy_version")
              .order_by("reviewer__username"))
    rubric = version.parsed_rubric()
    return render(request, "calibration/triage_detail.html", {
        "d": d, "humans": humans, "rubric": rubric, "dimension": rubric.dimension(d.dimension),
        "clauses": (latest or version).clauses.all(), "judged_clauses": version.clauses.all(), "error": error,
        "decision": getattr(d, "decision", None) if hasattr(d, "decision") else None,
        "resolutions": TriageDecision.Resolution.choices, "post": request.POST,
        "consensus": consensus_description(),
    })


@require_POST
def rejudge(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(JudgeRun, pk=pk)
    if not has_role(request.user, Role.ANALYST):
        raise PermissionDenied("Only analysts and admins run judges.")
    try:
        new = calibration_rejudge(run=run, user=request.user)
    except Exception as exc:
        messages.error(request, f"Not re-judged: {exc}")
        return redirect("calibration:run", pk=pk)
    messages.success(request, f"Re-judging as run #{new.pk}; unchanged prompts come from the cache.")
    return redirect("calibration:compare", old=pk, new=new.pk)


@require_GET
def compare(request: HttpRequest, old: int, new: int) -> HttpResponse:
    old_run = get_object_or_404(JudgeRun.objects.select_related("judge_version__judge", "judge_version__policy_version"), pk=old)
    new_run = get_object_or_404(JudgeRun.objects.select_related("judge_version__judge", "judge_version__policy_version"), pk=new)
    context = {"old": old_run, "new": new_run, "ready": not new_run.is_active}
    if context["ready"]:
        context.update(run_comparison(old_run, new_run))
    if request.htmx:
        return render(request, "calibration/compare.html#body", context)
    return render(request, "calibration/compare.html", context)
