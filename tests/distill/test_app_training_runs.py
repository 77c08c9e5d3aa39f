"""Training runs in this process with the real trainer (tiny: max_length 32, a few steps): a trained,
loadable, evaluated student; a cancel that keeps the checkpoint and a resume that continues from it;
the task's failure path and the stall sweep, so no run stays "running" for ever."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from distill.models import StudentEvaluation, StudentModel
from distill.selectors import student_model_path
from distill.services import (
    TeacherSource,
    _Progress,
    student_after_training,
    student_train_cancel,
    student_train_execute,
    student_train_resume,
    student_train_start,
    students_sweep,
    training_set_build,
)
from distill.tasks import StudentTask
from tests.distill.app_helpers import human_labels, relevant, teacher_run, world

pytestmark = pytest.mark.django_db

TINY = {"epochs": 2, "max_length": 32, "batch_size": 8, "patience": 2, "checkpoint_every_steps": 1}


@pytest.fixture
def training_set():
    w = world(queries=10, depth=4)
    run = teacher_run(w, "teacher", relevant)
    human_labels(w, relevant)
    ts = training_set_build(name="tiny", policy_version=w.version, teachers=[TeacherSource(run)], user=w.analyst,
                            include_human_labels=True, fractions={"train": 0.6, "validation": 0.2, "test": 0.2})
    ts.analyst = w.analyst
    return ts


def _start(training_set, django_capture_on_commit_callbacks, **config):
    with django_capture_on_commit_callbacks(execute=False):
        return student_train_start(training_set=training_set, user=training_set.analyst, config={**TINY, **config})


def test_a_tiny_run_trains_a_loadable_student_that_is_then_evaluated(training_set, django_capture_on_commit_callbacks):
    student = _start(training_set, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        assert student_train_execute(student_id=student.pk) == "succeeded"
    assert len(queued) == 1  # the evaluation task
    assert student_train_execute(student_id=student.pk) == "claimed-elsewhere"  # a redelivered task does nothing
    student.refresh_from_db()
    assert student.status == "succeeded" and student.percent == 100 and len(student.model_hash) == 64
    assert (student_model_path(student) / "manifest.json").is_file()
    assert student.manifest["training_set_hash"] == training_set.content_hash
    assert student.history["loss"] and {v["epoch"] for v in student.history["val"]} <= {1, 2}
    assert student.steps_total > 0 and student.train_seconds > 0

    assert student_after_training(student_id=student.pk) == "evaluated"
    evaluation = StudentEvaluation.objects.get(student=student)
    figures = evaluation.figures["dimensions"]["relevance"]
    assert evaluation.figures["has_human_labels"] and figures["human_items"] == evaluation.figures["items"]
    assert set(figures["teacher_human"]) == {str(training_set.sources.get(kind="judge_run").judge_run_id)}
    assert figures["student_human"]["n"] == figures["teacher_human"][str(training_set.sources.get(kind="judge_run").judge_run_id)]["n"]
    # the student's labels are within the rubric: its confusion matrix is over the rubric's four levels
    assert len(figures["student_human"]["confusion"]) == 4
    assert sum(map(sum, figures["student_human"]["confusion"])) == evaluation.figures["items"]
    assert evaluation.seconds_per_1k > 0 and evaluation.model_hash == student.model_hash
    assert student_after_training(student_id=student.pk) == "already evaluated"


def test_a_cancel_keeps_the_checkpoint_and_resume_continues_from_it(training_set, django_capture_on_commit_callbacks,
                                                                      monkeypatch):
    student = _start(training_set, django_capture_on_commit_callbacks)
    original = _Progress.on_progress

    def cancel_after_two_steps(self, progress):
        original(self, progress)
        if progress.step >= 2:  # the analyst presses Cancel while it trains
            student_train_cancel(student=student, user=training_set.analyst)

    monkeypatch.setattr(_Progress, "on_progress", cancel_after_two_steps)
    assert student_train_execute(student_id=student.pk) == "cancelled"
    student.refresh_from_db()
    assert student.status == "cancelled" and 2 <= student.step < student.steps_total
    assert (student_model_path(student) / "checkpoint").is_dir()
    assert not student_train_cancel(student=student, user=training_set.analyst)  # already ended
    monkeypatch.setattr(_Progress, "on_progress", original)
    stopped_at = student.step

    steps_seen = []
    monkeypatch.setattr(_Progress, "on_progress", lambda self, p: (steps_seen.append(p.step), original(self, p)))
    with django_capture_on_commit_callbacks(execute=False) as queued:
        assert student_train_resume(student=student, user=training_set.analyst)
    assert len(queued) == 1
    with django_capture_on_commit_callbacks(execute=False):
        assert student_train_execute(student_id=student.pk) == "succeeded"
    student.refresh_from_db()
    assert student.status == "succeeded" and student.resumes == 1
    assert min(steps_seen) > stopped_at - 1, "the resumed run started over instead of continuing"


def test_a_task_that_raises_fails_the_run_with_the_reason(training_set, django_capture_on_commit_callbacks):
    student = _start(training_set, django_capture_on_commit_callbacks)
    StudentModel.objects.filter(pk=student.pk).update(status="running")
    StudentTask().on_failure(RuntimeError("CUDA out of memory"), "task-1", (student.pk,), {}, None)
    student.refresh_from_db()
    assert student.status == "failed" and "RuntimeError: CUDA out of memory" in student.message
    assert "Resume" in student.message


def test_the_sweep_resumes_a_silent_run_then_fails_it_when_resuming_does_not_help(training_set,
                                                                                 django_capture_on_commit_callbacks):
    student = _start(training_set, django_capture_on_commit_callbacks)
    old = timezone.now() - timedelta(seconds=1000)
    StudentModel.objects.filter(pk=student.pk).update(status="running", heartbeat_at=old, step=3, steps_total=10)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        report = students_sweep(stall_s=60, max_resumes=1, check_backlog=False)
    assert report.resumed == [student.pk] and len(queued) == 1
    student.refresh_from_db()
    assert student.status == "queued" and student.stall_resumes == 1 and "resumed automatically" in student.message
    StudentModel.objects.filter(pk=student.pk).update(status="running", heartbeat_at=old)  # still no step of progress
    with django_capture_on_commit_callbacks(execute=False):
        report = students_sweep(stall_s=60, max_resumes=1, check_backlog=False)
    student.refresh_from_db()
    assert report.failed == [student.pk] and student.status == "failed" and "Stalled" in student.message


def test_the_sweep_leaves_a_live_run_alone(training_set, django_capture_on_commit_callbacks):
    student = _start(training_set, django_capture_on_commit_callbacks)
    StudentModel.objects.filter(pk=student.pk).update(status="running", heartbeat_at=timezone.now())
    assert str(students_sweep(stall_s=60, check_backlog=False)) == "No stalled trainings."


def test_the_sweep_command_reports_what_it_did(training_set, django_capture_on_commit_callbacks):
    from io import StringIO

    from django.core.management import call_command

    student = _start(training_set, django_capture_on_commit_callbacks)
    StudentModel.objects.filter(pk=student.pk).update(status="running",
                                                      heartbeat_at=timezone.now() - timedelta(seconds=1000))
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=False):
        call_command("distill_sweep", "--stall-s", "60", "--ignore-queue", stdout=out)
    assert out.getvalue().strip() == f"Stalled trainings: resumed #{student.pk}."
