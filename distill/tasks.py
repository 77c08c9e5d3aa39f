"""Thin Celery tasks on the distill queue (settings.CELERY_TASK_ROUTES): take ids, call one service.

A training task that raises fails its run through `student_train_fail` (on_failure), so no training
stays "running" with its page polling for ever; a worker killed outright calls no handler, and the
stall sweep (Celery beat) finds those runs and resumes them from their last checkpoint.
"""

from __future__ import annotations

import logging

from celery import Task, shared_task
from django.db import OperationalError

from sage.logging import log_context

from .services import student_after_training, student_pipeline, student_train_execute, student_train_fail, students_sweep

logger = logging.getLogger(__name__)


class StudentTask(Task):
    """A task whose first argument is a StudentModel id."""

    doing = "training"

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        student_id = args[0] if args else kwargs.get("student_id")
        reason = (f"A worker task failed while {self.doing}: {type(exc).__name__}: {str(exc).rstrip('.')}. "
                  f"The last checkpoint is kept; fix the cause, then Resume. (Celery task {task_id})")
        try:
            if self.doing == "training":
                student_train_fail(student_id=student_id, reason=reason)
            else:
                from .services import _followup

                _followup(student_id, "evaluate" if self.doing == "evaluating" else "promote", reason)
        except Exception:  # the database may be what failed; the sweep fails the run later
            logger.exception("could not record the failure of student %s", student_id,
                             extra={"run_kind": "student", "run_id": student_id, "task_id": task_id})


# acks_late: a killed worker's message is redelivered (Redis) and the claim makes the second delivery a
# no-op when the first is still alive; the sweep covers a message the broker lost.
@shared_task(base=StudentTask, doing="training", acks_late=True, autoretry_for=(OperationalError,),
             retry_backoff=True, max_retries=3)
def student_train_task(student_id: int) -> str:
    with log_context(run_kind="student", run_id=student_id):
        return student_train_execute(student_id=student_id)


@shared_task(base=StudentTask, doing="evaluating", acks_late=True, autoretry_for=(OperationalError,),
             retry_backoff=True, max_retries=3)
def student_evaluate_task(student_id: int, again: bool = False) -> str:
    with log_context(run_kind="student", run_id=student_id):
        return student_after_training(student_id=student_id, again=again)


@shared_task(base=StudentTask, doing="promoting", acks_late=True, autoretry_for=(OperationalError,),
             retry_backoff=True, max_retries=3)
def student_pipeline_task(student_id: int) -> str:
    with log_context(run_kind="student", run_id=student_id):
        return student_pipeline(student_id=student_id)


@shared_task(acks_late=True, ignore_result=True)
def students_sweep_task() -> str:
    """Scheduled by Celery beat (CELERY_BEAT_SCHEDULE "distill-students-sweep")."""
    report = students_sweep()
    if report.resumed or report.failed or report.deferred:
        logger.info("%s", report)
    return str(report)
