from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from sage.backup import sage_import

from ._progress import with_progress


class Command(BaseCommand):
    help = ("Import a backup written by sage_export into this instance, which must be empty and migrated to "
            "the same state. All or nothing: a bad line is reported with its number and nothing is written. "
            "--with-files also restores PATH.files.tar (student weights) into SAGE_DATA_DIR.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--with-files", action="store_true",
                            help="unpack PATH.files.tar into SAGE_DATA_DIR, checked against the backup's checksums")
        parser.add_argument("--database", default="default", help="the database alias to write")

    def handle(self, *args, path: Path, with_files: bool, database: str, **options) -> None:
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        report, seconds = with_progress(sage_import, path=path, verbosity=options["verbosity"], failure="Nothing imported: ",
                                        files=with_files, alias=database)
        self.stdout.write(self.style.SUCCESS(
            f"Imported {report.records:,} records of {len(report.counts)} models in {seconds:.1f} s "
            f"({report.records / max(seconds, 1e-9):,.0f} records/s)"))
        if with_files:
            self.stdout.write(f"Restored {report.files_restored} student model files into SAGE_DATA_DIR")
        elif report.files_expected:
            self.stdout.write(f"{len(report.files_expected)} student model files are expected under SAGE_DATA_DIR "
                              "(copy students/ from the old host, or import again with --with-files)")
