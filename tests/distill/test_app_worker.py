"""Training through Redis and real Celery worker processes (--pool=solo, so the training runs in the
process we kill): a cancel reaches a training worker, and a worker killed mid-training leaves a run the
stall sweep resumes from its last checkpoint, which a fresh worker then finishes."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
from django.db import connections

from distill.models import StudentModel
from distill.selectors import student_model_path
from distill.services import (
    TeacherSource,
    student_train_cancel,
    student_train_resume,
    student_train_start,
    students_sweep,
    training_set_build,
)
from tests.conftest import WorkerProcess, database_url_for, wait_for
from tests.distill.app_helpers import relevant, teacher_run, world

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

TINY = {"epochs": 3, "max_length": 32, "batch_size": 4, "patience": 3, "checkpoint_every_steps": 1}


@pytest.fixture
def queue(settings, monkeypatch):
    """A distill queue of this test's own, so no other worker of the session takes its tasks."""
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.skip("needs CELERY_BROKER_URL=redis://… (./run test starts a throwaway Redis)")
    name = f"distill-test-{uuid.uuid4().hex[:8]}"
    from distill.tasks import student_train_task

    monkeypatch.setattr(student_train_task, "delay", lambda pk: student_train_task.apply_async((pk,), queue=name))
    return name


def _worker(queue: str, name: str) -> WorkerProcess:
    env = dict(os.environ)
    env.update({"DATABASE_URL": database_url_for(connections["default"].settings_dict), "SAGE_DISTILL_QUEUE": queue,
                "SAGE_DISTILL_TORCH_THREADS": "1"})
    worker = WorkerProcess(env, name=name, extra_args=["-Q", queue, "--pool=solo"])
    worker.wait_ready()
    return worker


@pytest.fixture
def training_set():
    w = world(queries=8, depth=3)
    run = teacher_run(w, "teacher", relevant)
    ts = training_set_build(name="worker", policy_version=w.version, teachers=[TeacherSource(run)], user=w.analyst,
                            fractions={"train": 0.5, "validation": 0.25, "test": 0.25})
    ts.analyst = w.analyst
    return ts


def _stepped(student, at_least: int):
    return StudentModel.objects.filter(pk=student.pk, step__gte=at_least, status="running").first()


def test_a_cancel_reaches_the_training_worker_and_resume_finishes_it(queue, training_set):
    worker = _worker(queue, "distill-cancel")
    try:
        student = student_train_start(training_set=training_set, user=training_set.analyst, config=TINY)
        wait_for(lambda: _stepped(student, 1), timeout=300, message="training to start")
        assert student_train_cancel(student=student, user=training_set.analyst)
        wait_for(lambda: "student_train_task" in worker.log and "succeeded in" in worker.log, timeout=120,
                 message="the worker to stop training")
        student.refresh_from_db()
        assert student.status == "cancelled", worker.log[-3000:]
        assert (student_model_path(student) / "checkpoint").is_dir()
        assert student_train_resume(student=student, user=training_set.analyst)
        done = wait_for(lambda: StudentModel.objects.filter(pk=student.pk, status="succeeded").first(), timeout=600,
                        message="the resumed training to finish")
        assert done.resumes == 1 and len(done.model_hash) == 64, worker.log[-3000:]
    finally:
        worker.stop()


def test_a_worker_killed_mid_training_is_resumed_by_the_sweep_from_its_checkpoint(queue, training_set):
    first = _worker(queue, "distill-doomed")
    student = student_train_start(training_set=training_set, user=training_set.analyst, config=TINY)
    try:
        wait_for(lambda: _stepped(student, 2), timeout=300, message="two steps of training")
        wait_for(lambda: (student_model_path(student) / "checkpoint").is_dir(), timeout=60, message="a checkpoint")
        os.kill(first.proc.pid, signal.SIGKILL)  # no handler runs: the run is left "running"
        first.proc.wait()
    finally:
        first.stop()
    killed_at = StudentModel.objects.get(pk=student.pk)
    assert killed_at.status == "running"
    time.sleep(2)
    report = students_sweep(stall_s=1, check_backlog=False)
    assert report.resumed == [student.pk], str(report)
    second = _worker(queue, "distill-rescue")
    try:
        done = wait_for(lambda: StudentModel.objects.filter(pk=student.pk, status="succeeded").first(), timeout=600,
                        message="the rescued training to finish")
    finally:
        second.stop()
    assert done.resumes == 1 and done.stall_resumes == 1 and done.model_hash
    # It continued from the checkpoint: the loss curve holds the steps before the kill once, not twice.
    steps = [p["step"] for p in done.history["loss"]]
    assert steps == sorted(steps) and len(steps) == len(set(steps)), steps
    assert "No sign of life" not in done.message
