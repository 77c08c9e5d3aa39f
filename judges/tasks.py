"""Thin Celery tasks: take ids, call one service. Retried only for transient database trouble."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from .services import judge_run_chunk, judge_run_execute


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def judge_run_execute_task(run_id: int) -> int:
    return judge_run_execute(run_id=run_id)


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def judge_run_chunk_task(run_id: int, item_ids: list[int]) -> int:
    return judge_run_chunk(run_id=run_id, item_ids=item_ids)
