"""Reading JSONL uploads for importers that check every line before writing anything."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO, Any


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
            yield number, f"not valid JSON ({exc.msg})"
            continue
        yield number, row if isinstance(row, dict) else "a row must be a JSON object"
