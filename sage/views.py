from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET, require_POST

from .models import WorkerPing
from .selectors import system_status
from .services import worker_ping_request


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "sage/home.html", {"status": system_status()})


@require_GET
def system(request: HttpRequest) -> HttpResponse:
    return render(request, "sage/system.html", {"status": system_status()})


@require_POST
def ping_create(request: HttpRequest) -> HttpResponse:
    ping = worker_ping_request(requested_by=request.user)
    return render(request, "sage/system.html#ping", {"ping": ping})


@require_GET
def ping_detail(request: HttpRequest, pk: int) -> HttpResponse:
    ping = get_object_or_404(WorkerPing, pk=pk)
    return render(request, "sage/system.html#ping", {"ping": ping})


@login_not_required
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and docker-compose: the process is up and the DB answers."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


@login_not_required
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the database answers a query and the Celery broker is reachable; 503 names what failed.

    Separate from healthz so an orchestrator restarts a process only when it is dead, and merely takes
    it out of rotation while the database or broker is away.
    """
    from .operations import readiness

    ready = readiness()
    return JsonResponse(ready.as_dict(), status=200 if ready.ready else 503)
