from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from review.exports import queue_labels_export
from review.models import ReviewQueue


class Command(BaseCommand):
    help = ("Write a review queue's labels (latest revision per reviewer and item, or --history for every "
            "revision) as JSONL or spreadsheet-safe CSV, to a file or standard output.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--queue", type=int, required=True, help="ReviewQueue id")
        parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
        parser.add_argument("--history", action="store_true", help="every revision, not only the latest")
        parser.add_argument("-o", "--output", type=Path, help="default: standard output")

    def handle(self, *args, **options) -> None:
        queue = ReviewQueue.objects.select_related("policy_version").filter(pk=options["queue"]).first()
        if queue is None:
            raise CommandError(f"no review queue {options['queue']}")
        chunks = queue_labels_export(queue, options["format"], history=options["history"])
        if not options["output"]:
            for chunk in chunks:
                self.stdout.write(chunk, ending="")
            return
        with options["output"].open("w", encoding="utf-8", newline="") as out:
            out.writelines(chunks)
        self.stderr.write(f"Wrote queue {queue.pk}'s labels to {options['output']}.")
