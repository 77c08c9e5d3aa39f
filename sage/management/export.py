"""The shared shape of the export commands (export_judgments, export_labels): a format, an output."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from django.core.management.base import BaseCommand, CommandParser


class ExportCommand(BaseCommand):
    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
        parser.add_argument("-o", "--output", type=Path, help="default: standard output")

    def write_export(self, chunks: Iterable[str], output: Path | None, what: str) -> None:
        """The export's text to `output`, or to standard output when there is none."""
        if not output:
            for chunk in chunks:
                self.stdout.write(chunk, ending="")
            return
        with output.open("w", encoding="utf-8", newline="") as out:
            out.writelines(chunks)
        self.stderr.write(f"Wrote {what} to {output}.")
