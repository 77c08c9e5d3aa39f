from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from sage.api import ApiError, api_view
from sage.params import parse_int
from sage.roles import Role, has_role
from traffic.models import Sample

from .forms import JudgeCreateForm, JudgeVersionForm, RunStartForm
from .injection_check import latest_checks
from .models import Judge, JudgeRun, JudgeVersion, Judgment
from .costs import teacher_costs
from .selectors import judges_for_index, run_judgments_page, run_stats, runs_for_index, version_promotions
from .services import (
    JudgeError,
    judge_create,
    judge_run_cancel,
    judge_run_estimate,
    judge_run_resume,
    judge_run_start,
    judge_version_create,
)


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "judges/index.html", {"judges": judges_for_index(), "runs": runs_for_index(),
                                                 "can_run": has_role(request.user, Role.ANALYST)})


def judge_new(request: HttpRequest) -> HttpResponse:
    if not has_role(request.user, Role.ANALYST):
        raise PermissionDenied("Only analysts and admins can create judges.")
    form = JudgeCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        try:
            version = judge_create(name=data.pop("name"), surface=data.pop("surface"),
                                   description=data.pop("description"), user=request.user, **data)
        except JudgeError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Created {version}.")
            return redirect("judges:detail", pk=version.judge_id)
    return render(request, "judges/judge_form.html", {"form": form, "title": "New judge"})


def judge_detail(request: HttpRequest, pk: int) -> HttpResponse:
    judge = get_object_or_404(Judge, pk=pk)
    latest = judge.latest_version()
    form = JudgeVersionForm(request.POST or None, initial=JudgeVersionForm.initial_from(latest), surface=judge.surface)
    if request.method == "POST":
        if not has_role(request.user, Role.ANALYST):
            raise PermissionDenied("Only analysts and admins can edit judges.")
        if form.is_valid():
            try:
                version = judge_version_create(judge=judge, user=request.user,
                                               change_note=request.POST.get("change_note", ""), **form.cleaned_data)
            except JudgeError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Saved as {version}; earlier versions are unchanged.")
                return redirect("judges:detail", pk=pk)
    versions = list(judge.versions.select_related("policy_version__policy", "student_model", "judge__surface"))
    promotions = version_promotions(versions)
    checks = latest_checks(versions)
    for version in versions:
        version.promotion = promotions.get(version.pk)
        version.injection_check = checks.get(version.pk)
    return render(request, "judges/judge_detail.html", {
        "judge": judge, "versions": versions, "form": form,
        "runs": JudgeRun.objects.filter(judge_version__judge=judge).select_related("sample", "judge_version")[:30],
        "can_run": has_role(request.user, Role.ANALYST),
        "import_form": _import_form(judge) if latest and not latest.spec.has_model else None,
        # Only a version that prompts a model can be talked into a label; the section says so otherwise.
        "injection_checkable": any(v.spec.prompt_based and v.spec.has_model for v in versions),
    })


def _import_form(judge: Judge):
    from .io_forms import JudgmentImportForm

    return JudgmentImportForm(judge=judge)


def run_new(request: HttpRequest) -> HttpResponse:
    if not has_role(request.user, Role.ANALYST):
        raise PermissionDenied("Only analysts and admins can run judges.")
    form = RunStartForm(request.POST or request.GET or None)
    estimate = None
    if form.is_bound and form.is_valid():
        estimate = judge_run_estimate(version=form.cleaned_data["version"], sample=form.cleaned_data["sample"])
        if request.method == "POST" and request.POST.get("confirm"):
            try:
                run = judge_run_start(version=form.cleaned_data["version"], sample=form.cleaned_data["sample"],
                                      user=request.user, bypass_cache=form.cleaned_data["bypass_cache"])
            except JudgeError as exc:
                form.add_error(None, str(exc))
            else:
                return redirect("judges:run", pk=run.pk)
    template = "judges/run_new.html#estimate" if request.htmx and request.method == "GET" else "judges/run_new.html"
    return render(request, template, {"form": form, "estimate": estimate})


def _run_context(run: JudgeRun) -> dict:
    stats = run_stats(run)
    version = run.judge_version
    return {"run": run, "stats": stats, "promotion": version_promotions([version]).get(version.pk),
            "teachers": teacher_costs(run, stats.cost_per_1k) if version.student_model_id else []}


@require_GET
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(JudgeRun.objects.select_related("judge_version__judge__surface", "judge_version__policy_version__policy",
                                                            "judge_version__student_model", "sample", "precedent_set"), pk=pk)
    if request.htmx and request.htmx.target == "run-status":
        response = render(request, "judges/run_detail.html#status",
                          {**_run_context(run), "can_run": has_role(request.user, Role.ANALYST)})
        if not run.is_active:
            # The run just ended: reload once so the judgments table and actions are current too.
            response["HX-Refresh"] = "true"
        return response
    status, kind = request.GET.get("status", ""), request.GET.get("error_kind", "")
    page = run_judgments_page(run, status=status, error_kind=kind, page=request.GET.get("page"))
    return render(request, "judges/run_detail.html", {**_run_context(run), "page": page, "status_filter": status,
                                                      "kind_filter": kind, "can_run": has_role(request.user, Role.ANALYST)})


def _run_action(request: HttpRequest, pk: int, action, done: str, nothing: str) -> HttpResponse:
    if not has_role(request.user, Role.ANALYST):
        raise PermissionDenied("Only analysts and admins can cancel or resume runs.")
    run = get_object_or_404(JudgeRun, pk=pk)
    try:
        changed = action(run=run, user=request.user)
    except JudgeError as exc:
        messages.error(request, str(exc))
    else:
        messages.info(request, done if changed else nothing)
    return redirect("judges:run", pk=pk)


@require_POST
def run_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    return _run_action(request, pk, judge_run_cancel, "Run cancelled.", "The run had already finished.")


@require_POST
def run_resume(request: HttpRequest, pk: int) -> HttpResponse:
    return _run_action(request, pk, judge_run_resume, "Resumed: unjudged items are queued again.", "Nothing to resume.")


@require_GET
def judgment_detail(request: HttpRequest, pk: int) -> HttpResponse:
    judgment = get_object_or_404(Judgment.objects.select_related(
        "run", "item__query", "item__document", "judge_version__judge", "policy_version__policy", "precedent_set"), pk=pk)
    rubric = judgment.policy_version.parsed_rubric()
    labelled = [(dim, dim.level((judgment.labels or {}).get(dim.key))) for dim in rubric.dimensions]
    version = judgment.judge_version
    return render(request, "judges/judgment_detail.html", {
        "j": judgment, "labelled": labelled, "student_model": version.student_model,
        "promotion": version_promotions([version]).get(version.pk)})


# --- REST API ----------------------------------------------------------------------------------

def _run_json(run: JudgeRun) -> dict:
    return {
        "id": run.pk, "status": run.status, "judge_version": run.judge_version_id, "sample": run.sample_id,
        "total_items": run.total_items, "done_items": run.done_items, "error_items": run.error_items,
        "cached_items": run.cached_items, "tokens_in": run.tokens_in, "tokens_out": run.tokens_out,
        "cost": str(run.cost), "message": run.message,
    }


@api_view(methods=("POST", "GET"), roles=(Role.ANALYST,))
def api_runs(request: HttpRequest) -> JsonResponse:
    if request.method == "GET":
        return JsonResponse({"runs": [_run_json(r) for r in runs_for_index(100)]})
    import json

    try:
        body = json.loads(request.body or b"{}")
        version_id, sample_id = parse_int(body["judge_version"], minimum=1), parse_int(body["sample"], minimum=1)
        if version_id is None or sample_id is None:
            raise ValueError
        version = JudgeVersion.objects.get(pk=version_id)
        sample = Sample.objects.get(pk=sample_id)
    except (ValueError, KeyError, TypeError):
        raise ApiError("Send JSON with integer 'judge_version' and 'sample' (and optional 'bypass_cache').") from None
    except (JudgeVersion.DoesNotExist, Sample.DoesNotExist) as exc:
        raise ApiError(str(exc), status=404, code="not_found") from None
    try:
        run = judge_run_start(version=version, sample=sample, user=request.user, bypass_cache=bool(body.get("bypass_cache")))
    except JudgeError as exc:
        raise ApiError(str(exc), code="invalid") from None
    return JsonResponse(_run_json(run), status=201)


@api_view(methods=("GET",), roles=(Role.ANALYST,))
def api_run(request: HttpRequest, pk: int) -> JsonResponse:
    run = JudgeRun.objects.filter(pk=pk).first()
    if run is None:
        raise ApiError(f"No judge run {pk}.", status=404, code="not_found")
    return JsonResponse(_run_json(run))
