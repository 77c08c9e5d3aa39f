from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from sage.models import WorkerPing
from sage.services import worker_ping_request


class Command(BaseCommand):
    help = "Send a ping task through the broker and wait for a worker to answer; exits 1 on timeout."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (default 30)")

    def handle(self, *args, timeout: float, **options) -> None:
        ping = worker_ping_request()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ping = WorkerPing.objects.get(pk=ping.pk)
            if ping.answered_at:
                self.stdout.write(self.style.SUCCESS(
                    f"Worker {ping.worker_hostname} answered in {ping.round_trip_ms:.0f} ms"
                ))
                return
            time.sleep(0.2)
        raise CommandError(f"No worker answered within {timeout:g} s: is `celery -A sage worker` running?")
