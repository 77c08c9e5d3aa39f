from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand

from sage.backup import sage_export

from ._progress import with_progress


class Command(BaseCommand):
    help = ("Export every governed record (users and roles, policies, precedents, traffic, labels, judges and "
            "runs, calibration, students' manifests, comparisons, gates) as JSONL; PATH ending in .gz is "
            "gzip-compressed. Student weight files are listed with checksums; --with-files also packs them "
            "into PATH.files.tar. README: Backup and move.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--with-files", action="store_true",
                            help="also pack the students' model folders into PATH.files.tar")
        parser.add_argument("--database", default="default", help="the database alias to read")

    def handle(self, *args, path: Path, with_files: bool, database: str, **options) -> None:
        report, seconds = with_progress(sage_export, path=path, verbosity=options["verbosity"], failure="",
                                        files=with_files, alias=database)
        for label in report.unclassified:
            self.stderr.write(f"warning: {label} is in neither sage.backup.GOVERNED nor EXCLUDED; exported anyway")
        missing = [f["path"] for f in report.files if f.get("missing")]
        listed = [f for f in report.files if not f.get("missing")]
        self.stdout.write(self.style.SUCCESS(
            f"Exported {report.records:,} records of {len(report.counts)} models to {path} in {seconds:.1f} s "
            f"({report.records / max(seconds, 1e-9):,.0f} records/s)"))
        if report.files_archive:
            self.stdout.write(f"Packed {len(listed)} student model files into {report.files_archive}")
        elif listed:
            self.stdout.write(f"{len(listed)} student model files are listed with checksums, not copied: copy "
                              "SAGE_DATA_DIR/students/ separately, or export again with --with-files")
        for folder in missing:
            self.stderr.write(f"warning: student model folder {folder} is missing under SAGE_DATA_DIR")
