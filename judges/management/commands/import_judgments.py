from __future__ import annotations

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from judges.io import FieldMapping, format_for, judgments_import
from judges.models import Judge, JudgeVersion
from judges.services import JudgeError
from traffic.models import Sample


class Command(BaseCommand):
    help = ("Load labels produced elsewhere (JSONL, CSV or TREC qrels; format: README, 'Imported judge labels') "
            "as a finished run of an imported judge over a sample. All lines or none; --dry-run checks only.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--judge", help="the imported judge's name (its latest version)")
        target.add_argument("--judge-version", type=int, help="a JudgeVersion id")
        parser.add_argument("--sample", type=int, required=True, help="Sample id: every item needs one line")
        parser.add_argument("--format", choices=["jsonl", "csv", "qrels"], help="default: from the file extension")
        parser.add_argument("--label-field", action="append", default=[], metavar="DIMENSION=COLUMN",
                            help="read a dimension from another field, e.g. relevance=gpt4o (repeatable)")
        parser.add_argument("--query-field", default="", help="the field holding the query id (default query_id)")
        parser.add_argument("--doc-field", default="", help="the field holding the document id (default doc_id)")
        parser.add_argument("--skip-unmatched", action="store_true", help="skip lines for items outside the sample")
        parser.add_argument("--dry-run", action="store_true", help="check every line, import nothing")
        parser.add_argument("--user", default="", help="record this username as the importer")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")

    def handle(self, *args, **options) -> None:
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"{path} is not a file")
        if options["judge"]:
            judge = Judge.objects.filter(name=options["judge"]).first()
            if judge is None:
                raise CommandError(f"no judge named {options['judge']!r}")
            version = judge.latest_version()
        else:
            version = JudgeVersion.objects.filter(pk=options["judge_version"]).first()
        sample = Sample.objects.filter(pk=options["sample"]).first()
        if version is None or sample is None:
            raise CommandError("unknown judge version or sample")
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"no user {options['user']!r}")
        try:
            mapping = FieldMapping.parse(label_fields=options["label_field"], query_field=options["query_field"],
                                         doc_field=options["doc_field"], rubric=version.policy_version.parsed_rubric())
            fmt = format_for(path.name, options["format"] or "")
            with path.open("rb") as fh, tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=path.name,
                                              disable=options["no_progress"], file=self.stderr._out) as bar:
                def lines():
                    for line in fh:
                        bar.update(len(line))
                        yield line

                result = judgments_import(version=version, sample=sample, stream=lines(), fmt=fmt, mapping=mapping,
                                          user=user, skip_unmatched=options["skip_unmatched"],
                                          dry_run=options["dry_run"])
        except JudgeError as exc:
            raise CommandError(str(exc)) from None
        report = result.report
        if report.errors:
            for line, message in report.errors[:50]:
                self.stderr.write(f"{path.name}:{line}: {message}" if line else f"{path.name}: {message}")
            more = " (first 50 shown)" if len(report.errors) > 50 else ""
            raise CommandError(f"{len(report.errors)} problem(s){more}; nothing was imported.")
        skipped = f", {report.skipped} line(s) outside the sample skipped" if report.skipped else ""
        if options["dry_run"]:
            self.stdout.write(f"Dry run: all {report.rows} line(s) valid{skipped}; nothing imported.")
            return
        self.stdout.write(self.style.SUCCESS(
            f"Imported {report.run.done_items} judgments as run {report.run.pk} of {version}{skipped}."))
