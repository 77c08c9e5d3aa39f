from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from policy.models import Surface
from sage.api import ApiError, api_view
from sage.roles import Role, has_role

from .forms import SampleForm, UploadForm, VariantForm
from .models import Sample
from .rows import MAX_BODY_CHARS, OPTIONAL, REQUIRED
from .sampling import STRATEGIES
from .selectors import sample_items, traffic_overview
from .services import TrafficBusy, TrafficError, sample_draw, traffic_import, variant_create


def _page(request: HttpRequest, *, upload_form: UploadForm | None = None, sample_form: SampleForm | None = None,
          variant_form: VariantForm | None = None, import_error: str | None = None, status: int = 200) -> HttpResponse:
    return render(request, "traffic/index.html", {
        "overview": traffic_overview(),
        "can_edit": has_role(request.user, Role.ANALYST),
        "upload_form": upload_form or UploadForm(),
        "sample_form": sample_form or SampleForm(),
        "variant_form": variant_form or VariantForm(),
        "import_error": import_error,
        "strategies": STRATEGIES.values(),
        "required_fields": REQUIRED, "optional_fields": OPTIONAL, "max_body_chars": MAX_BODY_CHARS,
    }, status=status)


def _require_analyst(request: HttpRequest) -> None:
    if not has_role(request.user, Role.ANALYST):
        raise PermissionDenied("Only analysts and admins can change traffic.")


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return _page(request)


@require_POST
def variant_create_view(request: HttpRequest) -> HttpResponse:
    _require_analyst(request)
    form = VariantForm(request.POST)
    if form.is_valid():
        try:
            variant = variant_create(user=request.user, **form.cleaned_data)
        except (TrafficError, ValidationError) as exc:
            form.add_error(None, exc.messages if isinstance(exc, ValidationError) else str(exc))
        else:
            messages.success(request, f"Variant {variant.name} added to {variant.surface}.")
            return redirect("traffic:index")
    return _page(request, variant_form=form, status=400)


@require_POST
def import_upload(request: HttpRequest) -> HttpResponse:
    _require_analyst(request)
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return _page(request, upload_form=form, status=400)
    upload = form.cleaned_data["file"]
    try:
        # An UploadedFile iterates line by line from its temporary file: never the whole file in memory.
        result = traffic_import(surface=form.cleaned_data["surface"], source=upload, filename=upload.name,
                                user=request.user)
    except TrafficBusy as exc:
        response = _page(request, upload_form=form, import_error=str(exc), status=503)
        response["Retry-After"] = str(exc.retry_after)
        return response
    except TrafficError as exc:
        return _page(request, upload_form=form, import_error=str(exc), status=400)
    record = result.traffic_import
    if result.created:
        messages.success(request, f"Imported {record.rows:,} rows from {record.filename} "
                                  f"({record.stats.get('new_items', 0):,} new items).")
    else:
        messages.info(request, f"{record.filename or 'This file'} was already imported on "
                               f"{record.created_at:%Y-%m-%d %H:%M}; nothing changed.")
    return redirect("traffic:index")


@api_view(methods=("POST",), roles=(Role.ANALYST,))
def api_import(request: HttpRequest) -> JsonResponse:
    """POST /traffic/api/imports/?surface=SLUG&format=jsonl|csv with the file as the body or a
    multipart field named `file`."""
    surface = Surface.objects.filter(slug=request.GET.get("surface", "")).first()
    if surface is None:
        raise ApiError("Name the surface: ?surface=<slug>.", status=404, code="unknown_surface")
    upload = request.FILES.get("file")
    source, filename = (upload, upload.name) if upload is not None else (request, request.GET.get("filename", ""))
    try:
        result = traffic_import(surface=surface, source=source, filename=filename,
                                fmt=request.GET.get("format") or None, user=request.user)
    except TrafficError as exc:
        raise ApiError(str(exc), status=422, code="invalid_file", details={"line": exc.line}) from None
    record = result.traffic_import
    return JsonResponse({
        "import": record.pk, "created": result.created, "rows": record.rows, "sha256": record.sha256,
        "stats": record.stats, "seconds": record.seconds,
    }, status=201 if result.created else 200)


@require_POST
def sample_draw_view(request: HttpRequest) -> HttpResponse:
    _require_analyst(request)
    form = SampleForm(request.POST)
    if form.is_valid():
        try:
            sample = sample_draw(surface=form.cleaned_data["surface"], name=form.cleaned_data["name"],
                                 strategy=form.cleaned_data["strategy"], params=form.params(),
                                 seed=form.cleaned_data["seed"], user=request.user)
        except TrafficError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Sample {sample.name} drawn: {sample.item_count:,} items.")
            return redirect("traffic:sample-detail", pk=sample.pk)
    return _page(request, sample_form=form, status=400)


@require_GET
def sample_detail(request: HttpRequest, pk: int) -> HttpResponse:
    sample = get_object_or_404(Sample.objects.select_related("surface", "created_by"), pk=pk)
    return render(request, "traffic/sample_detail.html", {
        "sample": sample, "sample_items": sample_items(sample=sample)[:500],
        "strategy": STRATEGIES.get(sample.strategy),
    })
