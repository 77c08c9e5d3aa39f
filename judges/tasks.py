"""Thin Celery tasks: take ids, call one service. Retried only for transient database trouble.

A run's tasks go to the Celery queue its backend's registry entry names (a student's to `student`,
so `celery -A sage worker -Q student` on a GPU host takes them): `JudgeRunTask.apply_async` routes
every send, `.delay` and the retries included, unless the caller names a queue.

A run's task that still raises once its retries are spent fails the run (`JudgeRunTask.on_failure`
→ `judge_run_fail`), so no run is left "running" with its page polling for ever; one that raised
because the broker was unreachable leaves the run to the stall sweep instead. A worker that dies
outright calls no handler; the stall sweep, scheduled by Celery beat, finds those runs.

Each task binds its run (and chunk) to its log lines (`sage.logging.log_context`).
"""

from __future__ import annotations

import logging

from celery import Task, shared_task
from django.db import OperationalError
from kombu.exceptions import OperationalError as BrokerError

from sage.logging import log_context

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
        if isinstance(exc, BrokerError):
            # The broker did not answer (restarting) while the task sent its chunks or its retry.
            # Failed, the run would wait for a person to Resume it; left active, it stops beating and
            # the stall sweep queues it again once the broker is back.
            logger.warning("judge run %s: the broker is unreachable (%s); left to the stall sweep", run_id, exc,
                           extra={"run_kind": "judge", "run_id": run_id, "task_id": task_id})
            return
        reason = (f"A worker task failed {self.doing}: {type(exc).__name__}: {str(exc).rstrip('.')}. "
                  f"Judgments made before it are kept; fix the cause, then Resume. (Celery task {task_id})")
        with log_context(run_kind="judge", run_id=run_id, task_id=task_id):
            try:
                judge_run_fail(run_id=run_id, reason=reason)
            except Exception:  # the database may be what failed; the stall sweep fails the run later
                logger.exception("could not mark judge run %s failed", run_id)


@shared_task(base=JudgeRunTask, doing="while starting the run", acks_late=True, autoretry_for=(OperationalError,),
             retry_backoff=True, max_retries=5)
def judge_run_execute_task(run_id: int) -> int:
    with log_context(run_kind="judge", run_id=run_id):
        return judge_run_execute(run_id=run_id)


@shared_task(base=JudgeRunTask, doing="while judging a chunk of items", acks_late=True,
             autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def judge_run_chunk_task(run_id: int, item_ids: list[int]) -> int:
    # The chunk as its first and last item ids: a redelivered chunk logs under the same name.
    with log_context(run_kind="judge", run_id=run_id, chunk=f"{item_ids[0]}-{item_ids[-1]}" if item_ids else "empty"):
        return judge_run_chunk(run_id=run_id, item_ids=item_ids)


@shared_task(acks_late=True, ignore_result=True)
def judge_runs_sweep_task() -> str:
    """Scheduled by Celery beat every SAGE_JUDGE_SWEEP_S (see CELERY_BEAT_SCHEDULE)."""
    report = judge_runs_sweep()
    if report.resumed or report.failed or report.finished or report.deferred:
        logger.info("%s", report)
    return str(report)


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def injection_check_task(check_id: int) -> str:
    """judges.injection_check: a check ends succeeded or failed inside the service; a task that still
    raises (the database went away past the retries) fails the check here."""
    from .injection_check import injection_check_execute, injection_check_fail

    try:
        return injection_check_execute(check_id=check_id).status
    except Exception as exc:
        if not isinstance(exc, OperationalError) or injection_check_task.request.retries >= 3:
            try:
                injection_check_fail(check_id=check_id, reason=f"The worker task failed: {type(exc).__name__}: {exc}")
            except Exception:  # the database may be what failed
                logger.exception("could not mark injection check %s failed", check_id)
        raise
