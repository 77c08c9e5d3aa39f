"""Pages of the distill app. Everyone signed in reads them; analysts build training sets, train,
cancel, resume, evaluate and promote; admins also override a refused promotion (sage/roles.py)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from sage.roles import Role, has_role

from . import services
from .charts import confusion_charts, loss_spec, validation_spec
from .forms import PromoteForm, TrainForm, TrainingSetForm
from .models import StudentModel, TrainingSet
from .selectors import (
    cost_table,
    evaluation_rows,
    latest_evaluation,
    promotion_bar,
    student_promotion,
    students_for_index,
    training_sets_for_index,
)


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "distill/index.html", {"training_sets": training_sets_for_index(),
                                                  "students": students_for_index(),
                                                  "can_run": has_role(request.user, Role.ANALYST)})


def training_set_new(request: HttpRequest) -> HttpResponse:
    if not has_role(request.user, Role.ANALYST):
        raise PermissionDenied("Only analysts and admins can build training sets.")
    form = TrainingSetForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            training_set = services.training_set_build(
                name=data["name"], policy_version=data["policy_version"], user=request.user,
                teachers=[services.TeacherSource(run, data["weights"][run.pk]) for run in data["runs"]],
                include_precedents=data["include_precedents"], precedent_weight=data["precedent_weight"],
                include_human_labels=data["include_human_labels"], human_weight=data["human_weight"],
                humans_outrank_teachers=data["humans_outrank_teachers"], seed=data["seed"], fractions=data["fractions"])
        except services.DistillError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Built {training_set}.")
            return redirect("distill:training-set", pk=training_set.pk)
    status = 422 if form.is_bound and form.errors else 200
    return render(request, "distill/training_set_new.html", {"form": form}, status=status)


def _training_set_page(request: HttpRequest, training_set: TrainingSet, train_form: TrainForm, status: int = 200):
    dims = training_set.counts.get("dimensions", [])
    table = [{"split": split, **training_set.counts.get(split, {})} for split in services.SPLITS]
    return render(request, "distill/training_set_detail.html", {
        "ts": training_set, "dims": dims, "table": table, "train_form": train_form,
        "sources": training_set.sources.select_related("judge_run__judge_version__judge", "judge_run__sample"),
        "students": training_set.students.order_by("-created_at"),
        "examples": training_set.examples.order_by("split", "pk")[:30],
        "can_run": has_role(request.user, Role.ANALYST)}, status=status)


@require_GET
def training_set_detail(request: HttpRequest, pk: int) -> HttpResponse:
    training_set = get_object_or_404(TrainingSet.objects.select_related("surface", "policy_version__policy"), pk=pk)
    return _training_set_page(request, training_set, TrainForm())


@require_POST
def student_new(request: HttpRequest, pk: int) -> HttpResponse:
    training_set = get_object_or_404(TrainingSet, pk=pk)
    if not has_role(request.user, Role.ANALYST):
        raise PermissionDenied("Only analysts and admins can train students.")
    form = TrainForm(request.POST)
    if form.is_valid():
        try:
            student = services.student_train_start(training_set=training_set, user=request.user,
                                                   config=form.overrides(), name=form.cleaned_data["name"])
        except services.DistillError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("distill:student", pk=student.pk)
    return _training_set_page(request, training_set, form, status=422)


def _student_context(request: HttpRequest, student: StudentModel) -> dict:
    evaluation = latest_evaluation(student)
    surface = student.training_set.surface
    decision = student.decisions.filter(surface=surface).order_by("-decided_at", "-id").first()
    return {
        "student": student, "evaluation": evaluation, "rows": evaluation_rows(evaluation),
        "charts": confusion_charts(evaluation) if evaluation else [],
        "loss_spec": loss_spec(student.history or {}), "val_spec": validation_spec(student.history or {}),
        "decision": decision, "promoted": student_promotion(student, surface), "bar": promotion_bar(surface),
        "costs": cost_table(student, evaluation), "surface": surface,
        "can_run": has_role(request.user, Role.ANALYST), "is_admin": has_role(request.user, Role.ADMIN),
        "promote_form": PromoteForm(),
        "stale_evaluation": evaluation is not None and evaluation.model_hash != student.model_hash,
    }


@require_GET
def student_detail(request: HttpRequest, pk: int) -> HttpResponse:
    student = get_object_or_404(StudentModel.objects.select_related("training_set__surface",
                                                                    "training_set__policy_version__policy"), pk=pk)
    if request.htmx and request.htmx.target == "student-status":
        response = render(request, "distill/student_detail.html#status", _student_context(request, student))
        if not student.is_active:
            response["HX-Refresh"] = "true"  # it just ended: reload once so every block is current
        return response
    return render(request, "distill/student_detail.html", _student_context(request, student))


def _action(request: HttpRequest, pk: int, action, done: str, nothing: str) -> HttpResponse:
    if not has_role(request.user, Role.ANALYST):
        raise PermissionDenied("Only analysts and admins can cancel, resume or evaluate training.")
    student = get_object_or_404(StudentModel, pk=pk)
    try:
        changed = action(student=student, user=request.user)
    except services.DistillError as exc:
        messages.error(request, str(exc))
    else:
        messages.info(request, done if changed is not False else nothing)
    return redirect("distill:student", pk=pk)


@require_POST
def student_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    return _action(request, pk, services.student_train_cancel, "Training cancelled; the last checkpoint is kept.",
                   "The training had already ended.")


@require_POST
def student_resume(request: HttpRequest, pk: int) -> HttpResponse:
    return _action(request, pk, services.student_train_resume, "Resumed from the last checkpoint.",
                   "Nothing to resume.")


@require_POST
def student_evaluate(request: HttpRequest, pk: int) -> HttpResponse:
    return _action(request, pk, services.student_evaluate_request, "Evaluation queued.", "")


@require_POST
def student_promote(request: HttpRequest, pk: int) -> HttpResponse:
    if not has_role(request.user, Role.ANALYST):
        raise PermissionDenied("Only analysts and admins can promote students.")
    student = get_object_or_404(StudentModel.objects.select_related("training_set__surface"), pk=pk)
    form = PromoteForm(request.POST)
    if not form.is_valid():
        messages.error(request, "; ".join(e for errors in form.errors.values() for e in errors))
        return redirect("distill:student", pk=pk)
    try:
        decision = services.student_promote(student=student, surface=student.training_set.surface, user=request.user,
                                            override_reason=form.cleaned_data["override_reason"])
    except services.DistillError as exc:
        messages.error(request, str(exc))
    else:
        if decision.override:
            messages.warning(request, "Promoted by override; the reason is shown wherever its labels are used.")
        elif decision.promoted:
            messages.success(request, "Promoted: it meets the bar.")
        else:
            messages.error(request, f"Not promoted: {decision.reason}.")
    return redirect("distill:student", pk=pk)
