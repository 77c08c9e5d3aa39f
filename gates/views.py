"""Gate pages: the list, a gate's recipe and runs, a run's report, and the API tokens page."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from sage.roles import Role, has_role

from .forms import GateForm, RunForm, TokenForm
from .models import Gate, GateRun, ScopedToken
from .selectors import gate_run_report, gate_runs_recent, gates_for_index, tokens_visible_to
from .services import GateError, gate_create, gate_run_start, gate_update, token_create, token_revoke


def _require_analyst(request: HttpRequest, doing: str) -> None:
    if not has_role(request.user, Role.ANALYST):
        raise PermissionDenied(f"Only analysts and admins can {doing}.")


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "gates/index.html", {
        "gates": gates_for_index(), "runs": gate_runs_recent(limit=20),
        "can_edit": has_role(request.user, Role.ANALYST),
    })


@require_http_methods(["GET", "POST"])
def gate_new(request: HttpRequest) -> HttpResponse:
    can_edit = has_role(request.user, Role.ANALYST)
    form = GateForm(request.POST or None)
    if request.method == "POST":
        _require_analyst(request, "create gates")
        if form.is_valid():
            try:
                gate = gate_create(user=request.user, **form.cleaned_data)
            except GateError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Gate {gate.name} created.")
                return redirect(gate)
    return render(request, "gates/gate_form.html", {"form": form, "title": "New gate", "can_edit": can_edit},
                  status=400 if form.errors else 200)


@require_http_methods(["GET", "POST"])
def gate_edit(request: HttpRequest, pk: int) -> HttpResponse:
    gate = get_object_or_404(Gate, pk=pk)
    can_edit = has_role(request.user, Role.ANALYST)
    form = GateForm(request.POST or None, instance=gate)
    if request.method == "POST":
        _require_analyst(request, "edit gates")
        if form.is_valid():
            fields = {k: v for k, v in form.cleaned_data.items() if k != "name"}
            try:
                gate_update(gate=Gate.objects.get(pk=gate.pk), user=request.user, **fields)
            except GateError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Gate {gate.name} saved.")
                return redirect("gates:detail", pk=gate.pk)
    return render(request, "gates/gate_form.html", {"form": form, "title": f"Edit gate {gate.name}", "gate": gate,
                                                    "can_edit": can_edit}, status=400 if form.errors else 200)


def _detail(request: HttpRequest, gate: Gate, *, run_form: RunForm | None = None, status: int = 200) -> HttpResponse:
    return render(request, "gates/gate_detail.html", {
        "gate": gate, "runs": gate_runs_recent(gate=gate), "can_edit": has_role(request.user, Role.ANALYST),
        "run_form": run_form or RunForm(gate=gate),
    }, status=status)


@require_GET
def gate_detail(request: HttpRequest, pk: int) -> HttpResponse:
    gate = get_object_or_404(Gate.objects.select_related("surface", "baseline", "judge_version__judge"), pk=pk)
    return _detail(request, gate)


@require_POST
def gate_run_create(request: HttpRequest, pk: int) -> HttpResponse:
    gate = get_object_or_404(Gate.objects.select_related("surface", "baseline", "judge_version__judge"), pk=pk)
    _require_analyst(request, "run gates")
    form = RunForm(request.POST, gate=gate)
    if form.is_valid():
        try:
            started = gate_run_start(gate=gate, candidate=form.cleaned_data["candidate"].name, user=request.user,
                                     source=GateRun.Source.UI)
        except GateError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect(started.run)
    return _detail(request, gate, run_form=form, status=400)


@require_GET
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(GateRun.objects.select_related(
        "gate__surface", "gate__baseline", "gate__judge_version__judge", "candidate", "comparison", "token"), pk=pk)
    report = gate_run_report(run, base_url="")
    template = "gates/run_detail.html#status" if request.htmx else "gates/run_detail.html"
    return render(request, template, {"run": run, "report": report})


# --- API tokens ---------------------------------------------------------------------------------

def _tokens_page(request: HttpRequest, *, form: TokenForm | None = None, secret: str = "",
                 created: ScopedToken | None = None, status: int = 200) -> HttpResponse:
    is_admin = has_role(request.user, Role.ADMIN)
    response = render(request, "gates/tokens.html", {
        "tokens": tokens_visible_to(request.user) if has_role(request.user, Role.ANALYST) else [],
        "form": form or TokenForm(can_choose_owner=is_admin), "can_create": has_role(request.user, Role.ANALYST),
        "is_admin": is_admin, "secret": secret, "created": created,
    }, status=status)
    if secret:
        response["Cache-Control"] = "no-store"  # the one page that shows the secret is never cached
    return response


@require_GET
def tokens(request: HttpRequest) -> HttpResponse:
    return _tokens_page(request)


@require_POST
def token_new(request: HttpRequest) -> HttpResponse:
    _require_analyst(request, "create API tokens")
    form = TokenForm(request.POST, can_choose_owner=has_role(request.user, Role.ADMIN))
    if form.is_valid():
        try:
            token, secret = token_create(owner=form.cleaned_data.get("owner") or request.user,
                                         name=form.cleaned_data["name"], scopes=form.cleaned_data["scopes"],
                                         surface=form.cleaned_data["surface"], expires_at=form.expires_at(),
                                         user=request.user)
        except GateError as exc:
            form.add_error(None, str(exc))
        else:
            # Rendered, not redirected: the secret exists only in this response.
            return _tokens_page(request, secret=secret, created=token)
    return _tokens_page(request, form=form, status=400)


@require_POST
def token_revoke_view(request: HttpRequest, pk: int) -> HttpResponse:
    _require_analyst(request, "revoke API tokens")
    token = get_object_or_404(tokens_visible_to(request.user), pk=pk)
    try:
        revoked = token_revoke(token=token, user=request.user)
    except GateError as exc:
        raise PermissionDenied(str(exc)) from None
    if revoked:
        messages.success(request, f"Token {token.name} ({token.prefix}) revoked; CI jobs using it now get 401.")
    else:
        messages.info(request, f"Token {token.name} was already revoked.")
    return redirect("gates:tokens")
