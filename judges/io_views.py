"""Judge labels in and out over the web and the API: upload to an imported judge (dry run, then
confirm), `POST /judges/api/judges/<id>/imports/`, and any run's judgments as JSONL or CSV."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone

from sage.api import ApiError, api_view
from sage.params import id_param
from sage.roles import Role, has_role
from traffic.models import Sample

from .io import FieldMapping, JudgmentImport, format_for, judgments_import, run_judgments_export
from .io_forms import JudgmentImportForm
from .core.backends import backends_where
from .models import Judge, JudgeRun, JudgeVersion
from .services import JudgeError

UPLOAD_DIR = "judgment-imports"
SESSION_KEY = "judgment_uploads"
UPLOAD_TTL = timedelta(hours=24)


def _imported_version(judge: Judge) -> JudgeVersion:
    version = judge.latest_version()
    if version is None or version.spec.has_model:
        label = version.spec.label.lower() if version is not None else "no version"
        without = " or ".join(f"'{name}'" for name in backends_where(has_model=False))
        raise JudgeError(f"{judge.name} judges with a model ({label}); labels load into a judge whose backend is "
                         f"{without} (create one, or edit this judge into a new version with that backend).")
    return version


def _keep_upload(request: HttpRequest, upload, fmt: str) -> str:
    """Keep a dry run's file until it is confirmed (or a day passes), known only to this session."""
    _forget_old_uploads()
    name = default_storage.save(f"{UPLOAD_DIR}/{uuid.uuid4().hex}.{fmt}", upload)
    request.session[SESSION_KEY] = [*request.session.get(SESSION_KEY, [])[-9:], name]
    return name


def _forget_old_uploads() -> None:
    try:
        _dirs, files = default_storage.listdir(UPLOAD_DIR)
    except FileNotFoundError:
        return
    cutoff = timezone.now() - UPLOAD_TTL
    for name in files:
        path = f"{UPLOAD_DIR}/{name}"
        try:
            if default_storage.get_modified_time(path) < cutoff:
                default_storage.delete(path)
        except FileNotFoundError:
            pass  # another request cleaned it up first


def _render(request: HttpRequest, judge: Judge, form: JudgmentImportForm, result: JudgmentImport | None = None,
            upload: str = "", status: int = 200) -> HttpResponse:
    return render(request, "judges/judge_import.html", {
        "judge": judge, "form": form, "result": result, "upload": upload,
        "mapping": form.cleaned_data.get("mapping") if form.is_bound and hasattr(form, "cleaned_data") else None,
    }, status=status)


def judge_import(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: the upload form. POST with a file: a dry run (the file is kept for the confirm button)
    or the import itself; POST with `upload`: import the file a dry run checked."""
    judge = get_object_or_404(Judge.objects.select_related("surface"), pk=pk)
    if not has_role(request.user, Role.ANALYST):
        raise PermissionDenied("Only analysts and admins can import judge labels.")
    form = JudgmentImportForm(request.POST or None, request.FILES or None, judge=judge)
    if request.method != "POST":
        return _render(request, judge, form)
    try:
        version = _imported_version(judge)
    except JudgeError as exc:
        messages.error(request, str(exc))
        return redirect("judges:detail", pk=pk)
    if not form.is_valid():
        return _render(request, judge, form, status=400)
    data = form.cleaned_data
    kept = data.get("upload") or ""
    if kept:
        if kept not in request.session.get(SESSION_KEY, []) or not default_storage.exists(kept):
            form.add_error("file", "That upload is no longer available; choose the file again.")
            return _render(request, judge, form, status=400)
        fmt, dry_run, source = format_for(kept, data["format"]), False, default_storage.open(kept, "rb")
    else:
        upload = data["file"]
        try:
            fmt = format_for(upload.name, data["format"])
        except JudgeError as exc:
            form.add_error("format", str(exc))
            return _render(request, judge, form, status=400)
        dry_run = data["dry_run"]
        if dry_run:
            kept = _keep_upload(request, upload, fmt)
            upload.seek(0)
        source = upload
    try:
        with source:
            result = judgments_import(version=version, sample=data["sample"], stream=source, fmt=fmt,
                                      mapping=data["mapping"], user=request.user,
                                      skip_unmatched=data["skip_unmatched"], dry_run=dry_run)
    except JudgeError as exc:
        form.add_error(None, str(exc))
        return _render(request, judge, form, status=400)
    if not result.ok:
        return _render(request, judge, form, result, status=422)
    if dry_run:
        return _render(request, judge, form, result, upload=kept)
    if data.get("upload"):
        default_storage.delete(kept)
        request.session[SESSION_KEY] = [n for n in request.session.get(SESSION_KEY, []) if n != kept]
    run = result.report.run
    messages.success(request, f"Imported {run.done_items} judgments as run #{run.pk}"
                     + (f"; {result.report.skipped} line(s) outside the sample skipped." if result.report.skipped else "."))
    return redirect("judges:run", pk=run.pk)


# --- API and downloads -------------------------------------------------------------------------------

@api_view(methods=("POST",), roles=(Role.ANALYST,))
def api_judgments_import(request: HttpRequest, pk: int) -> JsonResponse:
    """POST /judges/api/judges/<id>/imports/?sample=S[&format=csv][&label_field=relevance=col]…[&dry_run=1]
    with the file as the body (or a multipart field `file`). 201 with the run, 200 for a clean dry
    run, 422 with every problem and its line."""
    judge = Judge.objects.filter(pk=pk).first()
    if judge is None:
        raise ApiError(f"No judge {pk}.", status=404, code="not_found")
    params = request.GET
    sample_id = id_param(params, "sample")
    sample = Sample.objects.filter(pk=sample_id).first() if sample_id else None
    if sample is None or sample.surface_id != judge.surface_id:
        raise ApiError("Name a sample of the judge's surface: ?sample=<id>.", status=404, code="unknown_sample")
    upload = request.FILES.get("file")
    try:
        version = _imported_version(judge)
        mapping = FieldMapping.parse(label_fields=params.getlist("label_field"), query_field=params.get("query_field", ""),
                                     doc_field=params.get("doc_field", ""),
                                     rubric=version.policy_version.parsed_rubric())
        fmt = format_for(upload.name if upload else params.get("filename", ""), params.get("format", ""))
        dry_run = params.get("dry_run", "") in ("1", "true", "yes")
        result = judgments_import(version=version, sample=sample, stream=upload or request, fmt=fmt, mapping=mapping,
                                  user=request.user, skip_unmatched=params.get("skip_unmatched", "") in ("1", "true", "yes"),
                                  dry_run=dry_run)
    except JudgeError as exc:
        raise ApiError(str(exc), status=422, code="invalid") from None
    report = result.report
    body = {"dry_run": dry_run, "rows": report.rows, "skipped": report.skipped,
            "errors": [{"line": line, "message": message} for line, message in report.errors]}
    if report.errors:
        return JsonResponse({"error": "invalid_file", "message": "Nothing was imported.", **body}, status=422)
    if dry_run:
        return JsonResponse({**body, "preview": result.preview})
    return JsonResponse({**body, "run": report.run.pk, "judgments": report.run.done_items}, status=201)


@api_view(methods=("GET",))
def run_export(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    """Every judgment of a run as JSONL (re-importable as an imported run) or spreadsheet-safe CSV;
    a download link on the run page, and the same URL with a bearer token from a script."""
    run = JudgeRun.objects.select_related("judge_version__policy_version").filter(pk=pk).first()
    if run is None:
        raise ApiError(f"No judge run {pk}.", status=404, code="not_found")
    fmt = "csv" if request.GET.get("format") == "csv" else "jsonl"
    response = StreamingHttpResponse(run_judgments_export(run, fmt),
                                     content_type="text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson")
    response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-judgments.{fmt}"'
    return response
