from __future__ import annotations

from django.core.management.base import CommandError, CommandParser

from judges.io import run_judgments_export
from judges.models import JudgeRun
from sage.management.export import ExportCommand


class Command(ExportCommand):
    help = ("Write every judgment of a run as JSONL (re-importable as an imported judge run) or as "
            "spreadsheet-safe CSV, to a file or standard output.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--run", type=int, required=True, help="JudgeRun id")
        super().add_arguments(parser)

    def handle(self, *args, **options) -> None:
        run = JudgeRun.objects.select_related("judge_version__policy_version").filter(pk=options["run"]).first()
        if run is None:
            raise CommandError(f"no judge run {options['run']}")
        self.write_export(run_judgments_export(run, options["format"]), options["output"], f"run {run.pk}'s judgments")
