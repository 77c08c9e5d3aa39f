"""Thin Celery tasks: take ids, call one service. Retried only for transient database trouble.

A run's tasks go to the Celery queue its backend's registry entry names (a student's to `student`,
so `celery -A sage worker -Q student` on a GPU host takes them): `JudgeRunTask.apply_async` routes
every send, `.delay` and the retries included, unless the caller names a queue.

A run's task that still raises once its retries are spent fails the run (`JudgeRunTask.on_failure`
→ `judge_run_fail`), so no run is left "running" with its page polling for ever. A worker that dies
outright calls no handler; the stall sweep, scheduled by Celery beat, finds those runs.
"""

from __future__ import annotations

import logging

from celery import Task, shared_task
from django.db import OperationalError

from .services import judge_run_chunk, judge_run_execute, judge_run_fail, judge_run_queue, judge_runs_sweep

logger = logging.getLogger(__name__)


class JudgeRunTask(Task):
    """A task whose first argument is a run id."""

    doing = "working on the run"

    def apply_async(self, args=None, kwargs=None, **options):
        if not options.get("queue"):
            run_id = args[0] if args else (kwargs or {}).get("run_id")
            options["queue"] = judge_run_queue(run_id=run_id)
        return super().apply_async(args, kwargs, **options)

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        run_id = args[0] if args else kwargs.get("run_id")
        reason = (f"A worker task failed {self.doing}: {type(exc).__name__}: {str(exc).rstrip('.')}. "
                  f"Judgments made before it are kept; fix the cause, then Resume. (Celery task {task_id})")
        try:
            judge_run_fail(run_id=run_id, reason=reason)
        except Exception:  # the database may be what failed; the stall sweep fails the run later
            logger.exception("could not mark judge run %s failed", run_id)


@shared_task(base=JudgeRunTask, doing="while starting the run", acks_late=True, autoretry_for=(OperationalError,),
             retry_backoff=True, max_retries=5)
def judge_run_execute_task(run_id: int) -> int:
    return judge_run_execute(run_id=run_id)


@shared_task(base=JudgeRunTask, doing="while judging a chunk of items", acks_late=True,
             autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def judge_run_chunk_task(run_id: int, item_ids: list[int]) -> int:
    return judge_run_chunk(run_id=run_id, item_ids=item_ids)


@shared_task(acks_late=True, ignore_result=True)
def judge_runs_sweep_task() -> str:
    """Scheduled by Celery beat every SAGE_JUDGE_SWEEP_S (see CELERY_BEAT_SCHEDULE)."""
    report = judge_runs_sweep()
    if report.resumed or report.failed or report.finished or report.deferred:
        logger.info("%s", report)
    return str(report)
