from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from judges.services import judge_runs_sweep


class Command(BaseCommand):
    help = ("Resume judge runs that show no sign of progress (no heartbeat for --stall-s seconds), and fail those "
            "that automatic resumes did not help. Celery beat runs the same sweep every SAGE_JUDGE_SWEEP_S; this "
            "command is for doing it by hand, e.g. when no worker runs --beat.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--stall-s", type=int, default=settings.SAGE_JUDGE_STALL_S,
                            help="seconds without a heartbeat after which a run counts as stalled "
                                 "(default SAGE_JUDGE_STALL_S=%(default)s)")
        parser.add_argument("--max-resumes", type=int, default=settings.SAGE_JUDGE_STALL_RESUMES,
                            help="automatic resumes without progress before a run is failed "
                                 "(default SAGE_JUDGE_STALL_RESUMES=%(default)s)")
        parser.add_argument("--ignore-queue", action="store_true",
                            help="act even while tasks wait in the broker queue (they may be the runs' own chunks)")

    def handle(self, *args, **opts) -> None:
        report = judge_runs_sweep(stall_s=opts["stall_s"], max_resumes=opts["max_resumes"],
                                  check_backlog=not opts["ignore_queue"])
        self.stdout.write(str(report))
