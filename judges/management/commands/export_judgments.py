from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from judges.io import run_judgments_export
from judges.models import JudgeRun


class Command(BaseCommand):
    help = ("Write every judgment of a run as JSONL (re-importable as an imported judge run) or as "
            "spreadsheet-safe CSV, to a file or standard output.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--run", type=int, required=True, help="JudgeRun id")
        parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
        parser.add_argument("-o", "--output", type=Path, help="default: standard output")

    def handle(self, *args, **options) -> None:
        run = JudgeRun.objects.select_related("judge_version__policy_version").filter(pk=options["run"]).first()
        if run is None:
            raise CommandError(f"no judge run {options['run']}")
        chunks = run_judgments_export(run, options["format"])
        if not options["output"]:
            for chunk in chunks:
                self.stdout.write(chunk, ending="")
            return
        with options["output"].open("w", encoding="utf-8", newline="") as out:
            out.writelines(chunks)
        self.stderr.write(f"Wrote run {run.pk}'s judgments to {options['output']}.")
