from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from policy.models import Policy
from sage.params import id_param, int_param, parse_int
from sage.roles import Role, has_role

from .forms import ImportForm, PrecedentForm
from .io import precedent_label_keys, precedents_export, precedents_import
from .models import Precedent
from .selectors import PrecedentFilters, precedent_facets, precedents_for_list
from .services import (
    PrecedentError,
    StalePrecedentError,
    precedent_create,
    precedent_update,
    precedents_accept,
    precedents_retire,
)


def _filters(request: HttpRequest) -> PrecedentFilters:
    policy_id = id_param(request.GET, "policy")
    policy = Policy.objects.filter(pk=policy_id).first() if policy_id else None
    return PrecedentFilters(policy=policy, **{k: request.GET.get(k, "").strip()
                                              for k in ("status", "clause", "tag", "label", "q")})


def _export_querystring(request: HttpRequest) -> str:
    params = request.GET.copy()
    for name in ("page", "format"):
        params.pop(name, None)
    return params.urlencode()


@require_GET
def precedent_list(request: HttpRequest) -> HttpResponse:
    filters = _filters(request)
    page = Paginator(precedents_for_list(filters), 50).get_page(request.GET.get("page"))
    context = {
        "page": page, "filters": filters, "facets": precedent_facets(filters.policy),
        "policies": Policy.objects.all(), "statuses": Precedent.Status.choices,
        "can_edit": has_role(request.user, Role.REVIEWER), "querystring": request.GET.urlencode(),
        "export_querystring": _export_querystring(request),
    }
    template = "precedent/list.html#results" if request.htmx and request.htmx.target == "results" else "precedent/list.html"
    return render(request, template, context)


@require_POST
def precedent_bulk(request: HttpRequest) -> HttpResponse:
    if not has_role(request.user, Role.REVIEWER):
        raise PermissionDenied("Only reviewers and admins can accept or retire precedents.")
    ids = [i for i in (parse_int(raw, minimum=1) for raw in request.POST.getlist("ids")) if i is not None]
    action = request.POST.get("action")
    precedents = list(Precedent.objects.filter(pk__in=ids).select_related("policy"))
    if not precedents:
        messages.warning(request, "Select at least one precedent.")
    else:
        try:
            if action == "accept":
                n = precedents_accept(precedents=precedents, user=request.user)
                messages.success(request, f"Accepted {n} precedent(s).")
            elif action == "retire":
                n = precedents_retire(precedents=precedents, user=request.user)
                messages.success(request, f"Retired {n} precedent(s).")
            else:
                messages.error(request, f"Unknown action {action!r}.")
        except PrecedentError as exc:
            messages.error(request, f"Nothing changed: {exc}")
    return redirect(f"{request.build_absolute_uri('/precedents/')}?{request.POST.get('querystring', '')}")


def _policy_for_new(request: HttpRequest) -> Policy | None:
    policy_id = id_param(request.GET, "policy") or id_param(request.POST, "policy")
    if policy_id:
        return Policy.objects.filter(pk=policy_id).first()
    return Policy.objects.first()


def precedent_new(request: HttpRequest) -> HttpResponse:
    if not has_role(request.user, Role.REVIEWER):
        raise PermissionDenied("Only reviewers and admins can add precedents.")
    policy = _policy_for_new(request)
    version = policy.latest_published() if policy else None
    if version is None:
        messages.error(request, "Publish a policy first: precedents are labelled against its rubric.")
        return redirect("precedent:list")
    form = PrecedentForm(request.POST or None, version=version)
    if request.method == "POST" and form.is_valid():
        try:
            precedent = precedent_create(policy=policy, data=form.to_data(), user=request.user,
                                         accept=bool(request.POST.get("accept")) and has_role(request.user, Role.REVIEWER))
        except PrecedentError as exc:
            for name, errs in exc.errors.items():
                for e in errs:
                    form.add_error(name if name in form.fields else None, e)
        else:
            messages.success(request, f"Precedent #{precedent.pk} saved as {precedent.status}.")
            return redirect("precedent:detail", pk=precedent.pk)
    return render(request, "precedent/form.html", {"form": form, "policy": policy, "version": version,
                                                   "policies": Policy.objects.all()})


def precedent_detail(request: HttpRequest, pk: int) -> HttpResponse:
    precedent = get_object_or_404(Precedent.objects.select_related("policy", "author", "accepted_version"), pk=pk)
    version = precedent.policy.latest_published()
    form = PrecedentForm(request.POST or None, version=version, initial=PrecedentForm.initial_from(precedent))
    if request.method == "POST":
        if not has_role(request.user, Role.REVIEWER):
            raise PermissionDenied("Only reviewers and admins can edit precedents.")
        if form.is_valid():
            try:
                precedent_update(precedent=precedent, data=form.to_data(), user=request.user,
                                 expected_revision=int_param(request.POST, "revision", -1),
                                 note=request.POST.get("note", "") or "edited")
            except StalePrecedentError as exc:
                form.add_error(None, str(exc))
            except PrecedentError as exc:
                for name, errs in exc.errors.items() or {None: [str(exc)]}.items():
                    for e in errs:
                        form.add_error(name if name in form.fields else None, e)
            else:
                messages.success(request, "Precedent saved.")
                return redirect("precedent:detail", pk=pk)
    rubric = version.parsed_rubric()
    labelled = [(dim, dim.level(precedent.labels.get(dim.key))) for dim in rubric.dimensions]
    return render(request, "precedent/detail.html", {
        "precedent": precedent, "form": form, "labelled": labelled, "version": version,
        "revisions": precedent.revisions.select_related("changed_by")[:20],
        "can_edit": has_role(request.user, Role.REVIEWER),
    })


def precedent_import(request: HttpRequest) -> HttpResponse:
    if not has_role(request.user, Role.REVIEWER):
        raise PermissionDenied("Only reviewers and admins can import precedents.")
    form = ImportForm(request.POST or None, request.FILES or None, initial={"dry_run": True})
    report = None
    if request.method == "POST" and form.is_valid():
        try:
            report = precedents_import(policy=form.cleaned_data["policy"], stream=form.cleaned_data["file"].file,
                                       fmt=form.file_format(), user=request.user, dry_run=form.cleaned_data["dry_run"])
        except PrecedentError as exc:
            form.add_error(None, str(exc))
        else:
            if report.ok and not report.dry_run:
                skipped = f"; {len(report.skipped)} identical row(s) skipped" if report.skipped else ""
                near = f"; {len(report.duplicates)} possible duplicate(s) to check" if report.duplicates else ""
                messages.success(request, f"Imported {report.created} precedent(s){skipped}{near}.")
                if report.duplicates:
                    # Show which ones: the report page lists them with their lines.
                    return render(request, "precedent/import.html", {"form": form, "report": report})
                return redirect("precedent:list")
    return render(request, "precedent/import.html", {"form": form, "report": report},
                  status=422 if report is not None and not report.ok else 200)


@require_GET
def precedent_export(request: HttpRequest) -> StreamingHttpResponse:
    # The same filters as the list page: its export links carry the page's current query string.
    filters = _filters(request)
    fmt = "csv" if request.GET.get("format") == "csv" else "jsonl"
    precedents = precedents_for_list(filters)
    keys = precedent_label_keys(precedents) if fmt == "csv" else []
    response = StreamingHttpResponse(
        precedents_export(precedents.iterator(), fmt, keys),
        content_type="text/csv" if fmt == "csv" else "application/x-ndjson",
    )
    response["Content-Disposition"] = f'attachment; filename="precedents.{fmt}"'
    return response
