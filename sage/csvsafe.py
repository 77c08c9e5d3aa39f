"""CSV files that are safe to open in a spreadsheet, and that still read back exactly.

A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is a formula to Excel,
LibreOffice and Google Sheets; exported text (a query, a rationale, a document) is untrusted, so
every CSV export writes such a cell with a leading single quote (OWASP, "CSV Injection"). A cell
that already starts with a quote gets one more, so `csv_unescape` on import restores every value.
Only text is escaped: a number such as -1 is not a formula.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    if isinstance(value, str) and value.startswith((*FORMULA_STARTS, "'")):
        return "'" + value
    return value


def csv_unescape(value: Any) -> Any:
    """The inverse of `csv_safe`, for importers that read files SAGE (or a careful tool) exported."""
    if isinstance(value, str) and value.startswith("'") and value[1:2] and value[1] in (*FORMULA_STARTS, "'"):
        return value[1:]
    return value


def csv_stream(header: list[str], rows: Iterable[dict[str, Any]], *, every: int = 200) -> Iterator[str]:
    """The CSV text in chunks of `every` rows (a streaming response), every cell made safe."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, extrasaction="ignore")
    writer.writeheader()
    for n, row in enumerate(rows, start=1):
        writer.writerow({key: csv_safe(value) for key, value in row.items()})
        if n % every == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def labelled_rows_export(rows: Iterable[dict[str, Any]], fmt: str, *, header: list[str], label_keys: list[str],
                         ) -> Iterator[str]:
    """Rows that carry a `labels` object, as JSONL lines (labels nested, re-importable) or as safe CSV
    with one `label_<dimension>` column per key in `header`'s place for them."""
    if fmt == "jsonl":
        for row in rows:
            yield json.dumps(row, ensure_ascii=False) + "\n"
        return

    def flat(row: dict[str, Any]) -> dict[str, Any]:
        labels = row.pop("labels") or {}
        row.update({f"label_{k}": labels.get(k, "") for k in label_keys})
        return row

    yield from csv_stream(header, (flat(row) for row in rows))
