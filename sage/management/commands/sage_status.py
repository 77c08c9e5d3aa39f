from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from sage.operations import SageStatus, sage_status


class Command(BaseCommand):
    help = ("Show queue depths per Celery queue, the workers that answer a ping and stalled runs "
            "(judge runs and student trainings running with an old heartbeat).")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--timeout", type=float, default=2.0,
                            help="seconds to wait for workers to answer the ping (default 2)")
        parser.add_argument("--json", action="store_true", dest="as_json", help="print one JSON object instead of text")

    def handle(self, *args, timeout: float, as_json: bool, **options) -> None:
        status = sage_status(ping_timeout_s=max(timeout, 0.0))
        if as_json:
            self.stdout.write(_dumps(status))
            return
        for line in _lines(status):
            self.stdout.write(line)


def _dumps(status: SageStatus) -> str:
    return json.dumps(status.as_dict(), indent=2, sort_keys=True)


def _lines(status: SageStatus) -> list[str]:
    reachable = "reachable" if status.broker_reachable else "UNREACHABLE"
    lines = [f"Broker ({status.broker_transport}): {reachable}", "Queues (messages waiting):"]
    for name, depth in status.queue_depths.items():
        lines.append(f"  {name}: {'not measurable' if depth is None else depth}")
    if status.workers is None:
        lines.append("Workers: not known (the ping could not be sent)")
    elif status.workers:
        lines.append(f"Workers answering a ping: {len(status.workers)}")
        lines += [f"  {hostname}" for hostname in status.workers]
    else:
        lines.append("Workers answering a ping: none")
    if status.stalled:
        lines.append(f"Stalled runs: {len(status.stalled)}")
        lines += [f"  {run.kind} {run.pk} ({run.name}): no heartbeat for {run.quiet_s} s (stall threshold {run.stall_s} s)"
                  for run in status.stalled]
    else:
        lines.append("Stalled runs: none")
    return lines
