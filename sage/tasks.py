from __future__ import annotations

import socket

from celery import shared_task

from .services import worker_ping_answer


@shared_task(acks_late=True)
def worker_ping_answer_task(ping_id: int) -> bool:
    return worker_ping_answer(ping_id=ping_id, hostname=socket.gethostname())
