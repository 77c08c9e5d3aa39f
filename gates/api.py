"""The gate's REST API for CI, authenticated by scoped bearer tokens (gates.tokens).

    POST /api/gates/<name>/runs           scope gate:run (+ traffic:import with a file) → 202 {run, url, …}
    GET  /api/gates/<name>/runs/<id>      scope gate:run or gate:read → the run's report
    POST /api/traffic/imports?surface=S   scope traffic:import → 201 (200: the same file again)

A run is started either with JSON `{"candidate": "<variant>", "client_key": "<ci attempt id>"}` or
with multipart fields `candidate` (+ `client_key`) and the candidate's traffic file as `traffic`.
"""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse
from django.urls import reverse

from policy.models import Surface
from sage.api import ApiError
from sage.params import choice_param, key_param
from traffic.models import TrafficImport
from traffic.services import TrafficBusy, TrafficError, traffic_import

from .models import Gate, GateRun, Scope
from .selectors import gate_run_report
from .services import GateError, gate_run_start
from .tokens import require_scope, require_surface, token_api


def _gate(request: HttpRequest, name: str) -> Gate:
    gate = Gate.objects.select_related("surface", "baseline", "judge_version__judge").filter(name=name).first()
    if gate is None:
        raise ApiError(f"No gate named {name!r}.", status=404, code="unknown_gate")
    require_surface(request.token, gate.surface)
    return gate


def _body(request: HttpRequest) -> dict:
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise ApiError("The body is not JSON: send {\"candidate\": \"<variant>\"}, or multipart fields "
                       "'candidate' and 'traffic'.") from None
    if not isinstance(body, dict):
        raise ApiError("Send a JSON object: {\"candidate\": \"<variant>\"}.")
    return body


def _run_links(request: HttpRequest, run: GateRun) -> dict:
    return {
        "url": request.build_absolute_uri(reverse("gates:api-run", args=[run.gate.name, run.pk])),
        "page": request.build_absolute_uri(run.get_absolute_url()),
        "comparison": request.build_absolute_uri(run.comparison.get_absolute_url()) if run.comparison_id else None,
    }


@token_api(methods=("POST",), scopes=(Scope.GATE_RUN,))
def runs(request: HttpRequest, name: str) -> JsonResponse:
    gate = _gate(request, name)
    upload = None
    if request.content_type == "multipart/form-data":
        data = request.POST
        upload = request.FILES.get("traffic")
        if upload is None and request.FILES:
            raise ApiError("Send the candidate's traffic file in the multipart field 'traffic'.")
    else:
        data = _body(request)
    candidate = data.get("candidate")
    client_key = data.get("client_key") or request.headers.get("Idempotency-Key", "")
    if not isinstance(candidate, str) or not candidate:
        raise ApiError("Name the candidate variant: {\"candidate\": \"<variant>\"}.", code="bad_candidate")
    if not isinstance(client_key, str):
        raise ApiError("'client_key' is a string (e.g. the CI pipeline's id).")
    if upload is not None:
        require_scope(request.token, Scope.TRAFFIC_IMPORT, doing="import the candidate's traffic")
    try:
        started = gate_run_start(gate=gate, candidate=candidate, user=request.user, source=GateRun.Source.API,
                                 token=request.token, traffic=upload, filename=upload.name if upload else "",
                                 client_key=client_key)
    except GateError as exc:
        raise ApiError(str(exc), status=exc.status, code=exc.code, details=exc.details) from None
    run = started.run
    body = {"run": run.pk, "gate": gate.name, "candidate": run.candidate.name, "status": run.status,
            "created": started.created, **_run_links(request, run)}
    if started.traffic_import is not None:
        record = started.traffic_import
        body["traffic_import"] = {"id": record.pk, "rows": record.rows, "created": started.traffic_created,
                                  "sha256": record.sha256}
    response = JsonResponse(body, status=202 if started.created else 200)
    response["Location"] = body["url"]
    return response


@token_api(methods=("GET",), scopes=(Scope.GATE_RUN, Scope.GATE_READ))
def run_detail(request: HttpRequest, name: str, run_id: int) -> JsonResponse:
    gate = _gate(request, name)
    run = GateRun.objects.select_related("gate__surface", "gate__baseline", "gate__judge_version__judge", "candidate",
                                         "comparison").filter(gate=gate, pk=run_id).first()
    if run is None:
        raise ApiError(f"Gate {gate.name!r} has no run {run_id}.", status=404, code="unknown_run")
    report = gate_run_report(run, base_url=request.build_absolute_uri("/"))
    report["api_url"] = _run_links(request, run)["url"]
    return JsonResponse(report)


@token_api(methods=("POST",), scopes=(Scope.TRAFFIC_IMPORT,))
def traffic_imports(request: HttpRequest) -> JsonResponse:
    """POST /api/traffic/imports?surface=<slug>&format=jsonl|csv with the file as the body or a multipart
    field named `file` (the same import as the Traffic page's: one transaction, idempotent by sha256)."""
    slug = key_param(request.GET, "surface")
    surface = Surface.objects.filter(slug=slug).first() if slug else None
    if surface is None:
        raise ApiError("Name the surface: ?surface=<slug>.", status=404, code="unknown_surface")
    require_surface(request.token, surface)
    upload = request.FILES.get("file")
    source, filename = (upload, upload.name) if upload is not None else (request, str(request.GET.get("filename", ""))[:255])
    fmt = choice_param(request.GET, "format", TrafficImport.Format.values) or None
    try:
        result = traffic_import(surface=surface, source=source, filename=filename, fmt=fmt, user=request.user)
    except TrafficBusy as exc:
        raise ApiError(str(exc), status=503, code="busy", details={"retry_after": exc.retry_after}) from None
    except TrafficError as exc:
        raise ApiError(str(exc), status=422, code="invalid_file", details={"line": exc.line}) from None
    record = result.traffic_import
    return JsonResponse({"import": record.pk, "created": result.created, "rows": record.rows, "sha256": record.sha256,
                         "stats": record.stats, "seconds": record.seconds}, status=201 if result.created else 200)
