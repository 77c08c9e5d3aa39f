from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from sage.roles import Role, has_role

from .forms import LabelImportForm, QueueForm
from .models import Assignment, ReviewQueue
from .selectors import label_history, previous_assignment, queue_agreement, queue_progress, queues_for
from .services import (
    ReviewError,
    ReviewPermissionError,
    assignment_next,
    assignment_skip,
    human_label_import,
    human_label_submit,
    review_queue_create,
)


def _index(request: HttpRequest, *, queue_form: QueueForm | None = None, import_form: LabelImportForm | None = None,
           status: int = 200) -> HttpResponse:
    is_analyst = has_role(request.user, Role.ANALYST)
    queues = queues_for(request.user)
    return render(request, "review/index.html", {
        "queues": queues if is_analyst else queues.filter(reviewers=request.user),
        "can_manage": is_analyst,
        "queue_form": queue_form or QueueForm(),
        "import_form": import_form or LabelImportForm(),
    }, status=status)


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return _index(request)


@require_POST
def queue_create_view(request: HttpRequest) -> HttpResponse:
    if not has_role(request.user, Role.ANALYST):
        raise PermissionDenied("Only analysts and admins can create review queues.")
    form = QueueForm(request.POST)
    if form.is_valid():
        try:
            queue = review_queue_create(user=request.user, **form.cleaned_data)
        except ReviewError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Queue {queue.name} created.")
            return redirect("review:queue-detail", pk=queue.pk)
    return _index(request, queue_form=form, status=400)


@require_POST
def label_import_view(request: HttpRequest) -> HttpResponse:
    if not has_role(request.user, Role.ANALYST):
        raise PermissionDenied("Only analysts and admins can import labels.")
    form = LabelImportForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            stats = human_label_import(source=form.cleaned_data["file"], user=request.user,
                                       policy_version=form.cleaned_data["policy_version"])
        except ReviewError as exc:
            form.add_error("file", str(exc))
        else:
            messages.success(request, f"Labels imported: {stats['created']} new, {stats['unchanged']} unchanged.")
            return redirect("review:index")
    return _index(request, import_form=form, status=400)


@require_GET
def queue_detail(request: HttpRequest, pk: int) -> HttpResponse:
    queue = get_object_or_404(ReviewQueue.objects.select_related("sample", "policy_version__policy"), pk=pk)
    return render(request, "review/queue_detail.html", {
        "queue": queue,
        "progress": queue_progress(queue=queue, reviewer=request.user),
        "agreement": queue_agreement(queue=queue),
        "is_reviewer": queue.reviewers.filter(pk=request.user.pk).exists(),
    })


# --- the labelling page ----------------------------------------------------------------------------

def _queue_for_reviewer(request: HttpRequest, pk: int) -> ReviewQueue:
    queue = get_object_or_404(ReviewQueue.objects.select_related("policy_version__policy", "sample"), pk=pk)
    if not has_role(request.user, Role.REVIEWER) or not queue.reviewers.filter(pk=request.user.pk).exists():
        raise PermissionDenied("You are not a reviewer of this queue.")
    return queue


def _own_assignment(request: HttpRequest, queue: ReviewQueue, assignment_id: int) -> Assignment:
    return get_object_or_404(
        Assignment.objects.select_related("item__query", "item__document"),
        pk=assignment_id, queue=queue, reviewer=request.user,
    )


def _render_labeller(request: HttpRequest, queue: ReviewQueue, assignment: Assignment | None, *,
                     error: str = "", posted: dict[str, Any] | None = None, status: int = 200) -> HttpResponse:
    history = list(label_history(item_id=assignment.item_id, reviewer=request.user)) if assignment else []
    latest = history[0] if history else None
    if posted is not None:
        current = posted
    elif latest is not None and latest.policy_version_id == queue.policy_version_id:
        current = {"labels": latest.labels, "rationale": latest.rationale}
    else:
        current = {"labels": {}, "rationale": ""}
    dimensions = [
        {"dim": dim, "selected": current["labels"].get(dim.key), "shortcut_index": i + 1}
        for i, dim in enumerate(queue.policy_version.parsed_rubric().dimensions)
    ]
    context = {
        "queue": queue, "assignment": assignment, "dimensions": dimensions, "rationale": current["rationale"],
        "history": history, "error": error,
        "progress": queue_progress(queue=queue, reviewer=request.user),
        "can_go_back": previous_assignment(queue=queue, reviewer=request.user, before=assignment) is not None,
    }
    template = "review/label.html#labeller" if request.htmx else "review/label.html"
    return render(request, template, context, status=status)


@require_GET
def label_next(request: HttpRequest, pk: int) -> HttpResponse:
    queue = _queue_for_reviewer(request, pk)
    return _render_labeller(request, queue, assignment_next(queue=queue, reviewer=request.user))


@require_GET
def label_item(request: HttpRequest, pk: int, assignment_id: int) -> HttpResponse:
    queue = _queue_for_reviewer(request, pk)
    return _render_labeller(request, queue, _own_assignment(request, queue, assignment_id))


@require_GET
def label_back(request: HttpRequest, pk: int, assignment_id: int) -> HttpResponse:
    queue = _queue_for_reviewer(request, pk)
    current = _own_assignment(request, queue, assignment_id)
    previous = previous_assignment(queue=queue, reviewer=request.user, before=current)
    return _render_labeller(request, queue, previous or current)


@require_POST
def label_submit(request: HttpRequest, pk: int, assignment_id: int) -> HttpResponse:
    queue = _queue_for_reviewer(request, pk)
    assignment = _own_assignment(request, queue, assignment_id)
    rubric = queue.policy_version.parsed_rubric()
    labels: dict[str, Any] = {}
    for dim in rubric.dimensions:
        raw = request.POST.get(f"dim-{dim.key}", "").strip()
        if raw.lstrip("-").isdigit():
            labels[dim.key] = int(raw)
    rationale = request.POST.get("rationale", "")
    time_spent = request.POST.get("time_spent_ms", "")
    try:
        human_label_submit(assignment=assignment, labels=labels, rationale=rationale, user=request.user,
                           time_spent_ms=int(time_spent) if time_spent.isdigit() else None)
    except ReviewPermissionError as exc:
        raise PermissionDenied(str(exc)) from None
    except ReviewError as exc:
        # htmx swaps only 2xx answers; a full-page post gets a 400.
        return _render_labeller(request, queue, assignment, error=str(exc),
                                posted={"labels": labels, "rationale": rationale},
                                status=200 if request.htmx else 400)
    if not request.htmx:
        return redirect("review:label", pk=queue.pk)
    return _render_labeller(request, queue, assignment_next(queue=queue, reviewer=request.user))


@require_POST
def label_skip(request: HttpRequest, pk: int, assignment_id: int) -> HttpResponse:
    queue = _queue_for_reviewer(request, pk)
    assignment = _own_assignment(request, queue, assignment_id)
    if assignment.status == Assignment.Status.ASSIGNED:
        assignment_skip(assignment=assignment, user=request.user)
    if not request.htmx:
        return redirect("review:label", pk=queue.pk)
    return _render_labeller(request, queue, assignment_next(queue=queue, reviewer=request.user))
