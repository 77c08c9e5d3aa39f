"""Pages of the injection check (judges/injection_check.py): start one (POST, analysts), watch it."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from sage.params import parse_int
from sage.roles import Role, has_role

from .injection_check import TEMPLATES, injection_check_start
from .models import InjectionCheck, JudgeVersion
from .services import JudgeError


@require_POST
def injection_check_new(request: HttpRequest, pk: int) -> HttpResponse:
    version = get_object_or_404(JudgeVersion.objects.select_related("judge__surface"), pk=pk)
    if not has_role(request.user, Role.ANALYST):
        raise PermissionDenied("Only analysts and admins can run injection checks.")
    # 0 when missing or not a whole number: the service refuses it, naming the range.
    passages = parse_int(request.POST.get("passages", "50"), minimum=0) or 0
    try:
        check = injection_check_start(version=version, passages=passages, user=request.user)
    except JudgeError as exc:
        messages.error(request, str(exc))
        return redirect("judges:detail", pk=version.judge_id)
    return redirect("judges:injection-check", pk=check.pk)


@require_GET
def injection_check_detail(request: HttpRequest, pk: int) -> HttpResponse:
    check = get_object_or_404(InjectionCheck.objects.select_related("judge_version__judge"), pk=pk)
    context = {"check": check, "templates": [name for name, _t in TEMPLATES],
               "can_run": has_role(request.user, Role.ANALYST)}
    if request.htmx and request.htmx.target == "check-status":
        response = render(request, "judges/injection_check.html#status", context)
        if not check.is_active:
            response["HX-Refresh"] = "true"  # ended: reload once for the tables
        return response
    return render(request, "judges/injection_check.html", context)
