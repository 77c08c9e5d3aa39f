from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from distill.services import students_sweep


class Command(BaseCommand):
    help = ("Resume student trainings that show no sign of life (no heartbeat for --stall-s seconds) from their last "
            "checkpoint, and fail those that automatic resumes did not help. Celery beat runs the same sweep; this "
            "command is for doing it by hand, e.g. when no worker runs --beat.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--stall-s", type=int, default=settings.SAGE_DISTILL_STALL_S,
                            help="seconds without a heartbeat after which a training counts as stalled "
                                 "(default SAGE_DISTILL_STALL_S=%(default)s)")
        parser.add_argument("--max-resumes", type=int, default=settings.SAGE_DISTILL_STALL_RESUMES,
                            help="automatic resumes without progress before a training is failed "
                                 "(default SAGE_DISTILL_STALL_RESUMES=%(default)s)")
        parser.add_argument("--ignore-queue", action="store_true",
                            help="act on queued trainings even while tasks wait in the distill queue")

    def handle(self, *args, **opts) -> None:
        self.stdout.write(str(students_sweep(stall_s=opts["stall_s"], max_resumes=opts["max_resumes"],
                                             check_backlog=not opts["ignore_queue"])))
