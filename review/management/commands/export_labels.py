from __future__ import annotations

from django.core.management.base import CommandError, CommandParser

from review.exports import queue_labels_export
from review.models import ReviewQueue
from sage.management.export import ExportCommand


class Command(ExportCommand):
    help = ("Write a review queue's labels (latest revision per reviewer and item, or --history for every "
            "revision) as JSONL or spreadsheet-safe CSV, to a file or standard output.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--queue", type=int, required=True, help="ReviewQueue id")
        parser.add_argument("--history", action="store_true", help="every revision, not only the latest")
        super().add_arguments(parser)

    def handle(self, *args, **options) -> None:
        queue = ReviewQueue.objects.select_related("policy_version").filter(pk=options["queue"]).first()
        if queue is None:
            raise CommandError(f"no review queue {options['queue']}")
        chunks = queue_labels_export(queue, options["format"], history=options["history"])
        self.write_export(chunks, options["output"], f"queue {queue.pk}'s labels")
