from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from sage.params import int_param
from sage.api import ApiError, api_view
from sage.roles import Role, has_role

from .exports import queue_labels_export
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
        # "Label" only on the queues this user may label (as _queue_for_reviewer checks), not a dead end.
        "labelling": (set(request.user.review_queues.values_list("pk", flat=True))
                      if has_role(request.user, Role.REVIEWER) else set()),
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
                                       policy_version=form.cleaned_data["policy_version"],
                                       default_assessor=form.cleaned_data["default_assessor"],
                                       dry_run=form.cleaned_data["dry_run"])
        except ReviewError as exc:
            form.add_error("file", str(exc))
        else:
            summary = (f"{stats['created']} new, {stats['unchanged']} unchanged, {stats['kept']} kept (corrected in "
                       f"triage), new external assessors: {', '.join(stats['new_assessors']) or 'none'}.")
            if form.cleaned_data["dry_run"]:
                messages.info(request, f"Dry run, nothing imported — every line is valid: {summary}")
                return _index(request, import_form=form)
            messages.success(request, f"Labels imported: {summary}")
            return redirect("review:index")
    return _index(request, import_form=form, status=400)


def _may_read_queue(user: AbstractBaseUser, queue: ReviewQueue) -> bool:
    """Analysts and admins manage every queue; anyone else reads only the queues they review."""
    return has_role(user, Role.ANALYST) or queue.reviewers.filter(pk=user.pk).exists()


@require_GET
def queue_detail(request: HttpRequest, pk: int) -> HttpResponse:
    queue = get_object_or_404(ReviewQueue.objects.select_related("sample", "policy_version__policy"), pk=pk)
    if not _may_read_queue(request.user, queue):
        raise PermissionDenied("You are not a reviewer of this queue.")
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
    assignment = get_object_or_404(
        Assignment.objects.select_related("item__query", "item__document"),
        pk=assignment_id, queue=queue, reviewer=request.user,
    )
    assignment.queue = queue  # the queue already loaded with its policy version: no second fetch per label
    return assignment


def _render_labeller(request: HttpRequest, queue: ReviewQueue, assignment: Assignment | None, *,
                     error: str = "", posted: dict[str, Any] | None = None, status: int = 200) -> HttpResponse:
    if assignment is not None and not Assignment.item.is_cached(assignment):
        # A fresh hand-out from assignment_next: one query for the item, its query and document, not three.
        assignment = Assignment.objects.select_related("item__query", "item__document").get(pk=assignment.pk)
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
        "progress": queue_progress(queue=queue, reviewer=request.user, detail=False),
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
        value = int_param(request.POST, f"dim-{dim.key}")
        if value is not None:
            labels[dim.key] = value
    rationale = request.POST.get("rationale", "")
    try:
        human_label_submit(assignment=assignment, labels=labels, rationale=rationale, user=request.user,
                           time_spent_ms=int_param(request.POST, "time_spent_ms", minimum=0, maximum=2**31 - 1))
    except ReviewPermissionError as exc:
        raise PermissionDenied(str(exc)) from None
    except ReviewError as exc:
        # A 422 either way: sage.js swaps a 4xx fragment rendered for its own target (#labeller), so the
        # reviewer sees the error beside what they entered.
        return _render_labeller(request, queue, assignment, error=str(exc),
                                posted={"labels": labels, "rationale": rationale}, status=422)
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


# --- exports (issue 12) ------------------------------------------------------------------------------

@api_view(methods=("GET",))
def queue_labels_export_view(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    """The queue's labels as JSONL or spreadsheet-safe CSV (`?history=1`: every revision); a download
    link on the queue page, and the same URL with a bearer token from a script."""
    queue = ReviewQueue.objects.select_related("policy_version").filter(pk=pk).first()
    if queue is None:
        raise ApiError(f"No review queue {pk}.", status=404, code="not_found")
    if not _may_read_queue(request.user, queue):
        raise ApiError("You are not a reviewer of this queue.", status=403, code="forbidden")
    fmt = "csv" if request.GET.get("format") == "csv" else "jsonl"
    response = StreamingHttpResponse(queue_labels_export(queue, fmt, history=request.GET.get("history") == "1"),
                                     content_type="text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson")
    response["Content-Disposition"] = f'attachment; filename="queue-{queue.pk}-labels.{fmt}"'
    return response
