"""Thin Celery tasks: take ids, call one service.

`comparison_refresh_task` checks the comparison's judge run and, once it ended, computes the results;
while the run works it queues itself again after SAGE_COMPARISON_POLL_S. A task that raises after its
retries fails the comparison (on_failure → comparison_fail); a lost task is covered by the beat-scheduled
`comparisons_sweep_task`, which refreshes every unfinished comparison.
"""

from __future__ import annotations

import logging

from celery import Task, shared_task
from django.conf import settings
from django.db import OperationalError

from .services import comparison_fail, comparison_refresh, comparisons_sweep

logger = logging.getLogger(__name__)


class ComparisonTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        comparison_id = args[0] if args else kwargs.get("comparison_id")
        try:
            comparison_fail(comparison_id=comparison_id,
                            reason=f"Computing the results failed: {type(exc).__name__}: {exc} (Celery task {task_id}).")
        except Exception:  # the database may be what failed; the sweep tries again later
            logger.exception("could not mark comparison %s failed", comparison_id)


@shared_task(base=ComparisonTask, acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def comparison_refresh_task(comparison_id: int) -> str:
    comparison = comparison_refresh(comparison_id=comparison_id)
    if comparison.is_active:
        comparison_refresh_task.apply_async((comparison_id,), countdown=settings.SAGE_COMPARISON_POLL_S)
    return comparison.status


@shared_task(acks_late=True, ignore_result=True)
def comparisons_sweep_task() -> str:
    ended = comparisons_sweep()
    return f"ended {len(ended)} comparison(s)"
