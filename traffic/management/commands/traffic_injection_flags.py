from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from traffic.services import documents_flag_injection


class Command(BaseCommand):
    help = ("Flag every document whose title or body looks addressed to a judge (prompt injection; "
            "judges/core/injection.py). Imports flag new documents themselves: run this once for documents "
            "imported before flags existed, and again after the detector's patterns change.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=2000)

    def handle(self, *args, **options) -> None:
        report = documents_flag_injection(batch_size=max(1, options["batch_size"]))
        self.stdout.write(f"{report.scanned:,} documents scanned; {report.flagged:,} flagged; "
                          f"{report.changed:,} changed.")
