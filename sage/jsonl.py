"""Reading JSONL uploads for importers that check every line before writing anything."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO, Any

from .text import json_nul_problem, nul_problem


def jsonl_rows(stream: IO[bytes]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, object) for each non-blank line, or (line number, problem) for a line that is
    not UTF-8, not JSON or not a JSON object. Streams: one line in memory at a time."""
    for number, raw in enumerate(stream, start=1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield number, f"not UTF-8 (byte {exc.start})"
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            yield number, json_nul_problem(text) or f"not valid JSON ({exc.msg})"
            continue
        if not isinstance(row, dict):
            yield number, "a row must be a JSON object"
            continue
        # PostgreSQL stores no NUL (sage/text.py); only a line with the escape can hold one.
        yield number, (nul_problem(row) if "\\u0000" in text else None) or row
