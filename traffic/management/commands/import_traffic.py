from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from policy.models import Surface
from traffic.services import TrafficBusy, TrafficError, traffic_import


class Command(BaseCommand):
    help = ("Import a JSONL or CSV file of result-list rows for a surface's variants (row format: README, "
            "'Traffic import'). One transaction; re-importing the same file changes nothing.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--surface", required=True, help="the surface's slug")
        parser.add_argument("--format", choices=["jsonl", "csv"], help="default: from the file extension")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")

    def handle(self, *args, **options) -> None:
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"{path} is not a file")
        surface = Surface.objects.filter(slug=options["surface"]).first()
        if surface is None:
            raise CommandError(f"no surface {options['surface']!r}; known: "
                               f"{', '.join(Surface.objects.values_list('slug', flat=True)) or 'none'}")
        with path.open("rb") as fh, tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=path.name,
                                          disable=options["no_progress"], file=self.stderr._out) as bar:
            try:
                result = traffic_import(surface=surface, source=fh, filename=path.name, fmt=options["format"],
                                        progress=bar.update)
            except (TrafficError, TrafficBusy) as exc:
                raise CommandError(str(exc)) from None
        record = result.traffic_import
        if not result.created:
            self.stdout.write(f"{path.name} was already imported ({record.rows:,} rows); nothing changed.")
            return
        rate = record.rows / record.seconds if record.seconds else 0
        self.stdout.write(self.style.SUCCESS(
            f"Imported {record.rows:,} rows in {record.seconds:.2f}s ({rate:,.0f} rows/s): {record.stats}"))
