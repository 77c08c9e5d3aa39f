"""Thin Celery tasks: follow a gate run until its comparison ends; sweep runs a lost task left behind.

The follow task re-queues itself every SAGE_GATE_POLL_S while the run is running. A worker that dies
takes the chain with it; the beat-scheduled sweep refreshes every running run, and a run past its
gate's timeout ends as an error there, so none stays "running" for ever.
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db import OperationalError

from sage.logging import log_context

from .services import gate_run_refresh, gate_runs_sweep


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5, ignore_result=True)
def gate_run_follow_task(run_id: int) -> str:
    with log_context(run_kind="gate", run_id=run_id):
        run = gate_run_refresh(run_id=run_id)
    if run.is_active:
        gate_run_follow_task.apply_async((run_id,), countdown=settings.SAGE_GATE_POLL_S)
    return run.status


@shared_task(acks_late=True, ignore_result=True)
def gate_runs_sweep_task() -> int:
    return gate_runs_sweep()
