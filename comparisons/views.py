"""Pages of the comparisons app. Views validate, call one service or selector, render; GETs never write."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect, HttpResponseClientRefresh

from sage.params import choice_param, id_param
from sage.roles import Role, has_role
from traffic.models import Variant

from .charts import deltas_spec, history_spec
from .forms import ComparisonForm, ReviewSliceForm
from .models import Comparison
from .selectors import (
    comparisons_for_index,
    flagged_counts,
    metric_rows,
    queries_by_delta,
    query_detail,
    treatment_history,
)
from .services import (
    ComparisonError,
    QuerySpec,
    comparison_create,
    comparison_recompute,
    comparison_review_slice,
)

QUERIES_PER_PAGE = 100


def _require_analyst(request: HttpRequest, what: str) -> None:
    if not has_role(request.user, Role.ANALYST):
        raise PermissionDenied(f"Only analysts and admins can {what}.")


def _index(request: HttpRequest, form: ComparisonForm | None = None, status: int = 200) -> HttpResponse:
    can_run = has_role(request.user, Role.ANALYST)
    return render(request, "comparisons/index.html", {
        "comparisons": comparisons_for_index(surface_id=id_param(request.GET, "surface")),
        "form": form or (ComparisonForm() if can_run else None), "can_run": can_run,
        "treatments": Variant.objects.select_related("surface").order_by("surface__name", "name"),
    }, status=status)


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return _index(request)


@require_POST
def new(request: HttpRequest) -> HttpResponse:
    _require_analyst(request, "run comparisons")
    form = ComparisonForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        threshold = data.get("threshold")
        try:
            comparison = comparison_create(
                surface=data["control"].surface, control=data["control"], treatment=data["treatment"],
                judge_version=data["judge_version"], k=data["k"], metrics=form.metric_names(),
                thresholds=None if threshold is None else {m: threshold for m in form.metric_names()},
                alpha=data["alpha"], query_sample=QuerySpec(queries=data.get("queries"), seed=data["seed"]),
                name=data.get("name") or "", user=request.user)
        except ComparisonError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Comparison {comparison} started.")
            if request.htmx:
                return HttpResponseClientRedirect(comparison.get_absolute_url())
            return redirect(comparison)
    if request.htmx:  # the form with its errors, swapped in place (sage.js swaps a 4xx fragment for its target)
        return render(request, "comparisons/index.html#form", {"form": form}, status=422)
    return _index(request, form, status=422)


@require_GET
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    comparison = get_object_or_404(Comparison.objects.select_related(
        "surface", "control", "treatment", "judge_version__judge", "judge_run", "sample"), pk=pk)
    rows = metric_rows(comparison)
    metric = choice_param(request.GET, "metric", comparison.metrics, comparison.metrics[0] if comparison.metrics else "")
    context = {"comparison": comparison, "rows": rows, "metric": metric,
               # A page of the query table: 2,000 compared queries rendered at once took seconds.
               "queries": Paginator(queries_by_delta(comparison, metric) if comparison.results else [],
                                    QUERIES_PER_PAGE).get_page(request.GET.get("page")),
               "chart": deltas_spec(rows) if rows else None, "can_run": has_role(request.user, Role.ANALYST),
               "has_ppi": any(r.get("ppi") for r in rows),
               "flagged": flagged_counts(comparison) if comparison.results else None}
    if context["can_run"] and comparison.results:
        context["slice_form"] = ReviewSliceForm()
    if request.htmx and request.htmx.target == "comparison-status":
        if not comparison.is_active:
            # Ended: reload the whole page, whose query table and forms exist only with results.
            return HttpResponseClientRefresh()
        return render(request, "comparisons/detail.html#status", context)
    return render(request, "comparisons/detail.html", context)


@require_GET
def query(request: HttpRequest, pk: int, query_id: int) -> HttpResponse:
    comparison = get_object_or_404(Comparison.objects.select_related("control", "treatment", "judge_version"), pk=pk)
    found = query_detail(comparison, query_id) if comparison.sample_id else None
    if found is None:
        raise Http404("That query is not part of this comparison.")
    return render(request, "comparisons/query.html", {"comparison": comparison, **found})


@require_POST
def review_slice(request: HttpRequest, pk: int) -> HttpResponse:
    _require_analyst(request, "send items to review")
    comparison = get_object_or_404(Comparison, pk=pk)
    form = ReviewSliceForm(request.POST)
    if form.is_valid():
        try:
            queue = comparison_review_slice(comparison=comparison, queries=form.cleaned_data["queries"],
                                            seed=form.cleaned_data["seed"], reviewers=form.cleaned_data["reviewers"],
                                            overlap=form.cleaned_data["overlap"], user=request.user)
        except ComparisonError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Review queue {queue.name!r} created over {queue.sample.item_count} results; "
                                      "recompute the comparison once they are labelled for the PPI estimates.")
            if request.htmx:
                return HttpResponseClientRedirect(reverse("review:queue-detail", kwargs={"pk": queue.pk}))
            return redirect("review:queue-detail", pk=queue.pk)
    return render(request, "comparisons/_slice_form.html", {"comparison": comparison, "slice_form": form}, status=422)


@require_POST
def recompute(request: HttpRequest, pk: int) -> HttpResponse:
    _require_analyst(request, "recompute comparisons")
    comparison = get_object_or_404(Comparison, pk=pk)
    try:
        comparison_recompute(comparison=comparison, user=request.user)
    except ComparisonError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Results computed again from the current judgments and human labels.")
    return redirect(comparison)


@require_GET
def history(request: HttpRequest) -> HttpResponse:
    treatment_id = id_param(request.GET, "treatment")
    treatment = get_object_or_404(Variant.objects.select_related("surface"), pk=treatment_id) if treatment_id else None
    points = treatment_history(treatment=treatment) if treatment else []
    return render(request, "comparisons/history.html", {
        "treatment": treatment, "points": points, "chart": history_spec(points) if points else None,
        "treatments": Variant.objects.select_related("surface").order_by("surface__name", "name"),
        "comparisons": comparisons_for_index(treatment_id=treatment.pk) if treatment else []})
