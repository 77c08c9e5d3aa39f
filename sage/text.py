"""One check for text that PostgreSQL cannot store: the NUL character (U+0000).

PostgreSQL refuses NUL in text columns and in jsonb (as the escape \\u0000), with an error that
would surface as a 500 half-way through an import. SQLite stores it silently, so the same file would
behave differently on the two databases. Every importer, and every service saving text that a view
reads straight from request.POST (a Django CharField refuses NUL itself), asks `nul_problem` first
and names the field in its (per-line) error instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

NUL = "\x00"


def nul_problem(value: Any, name: str = "") -> str | None:
    """"field 'query' contains a NUL byte" for the first string in `value` (a row: a mapping of
    fields, possibly nested, lists, strings) that holds U+0000, or None when there is none."""
    if isinstance(value, str):
        if NUL in value:
            return f"field {name!r} contains a NUL byte" if name else "the text contains a NUL byte"
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and NUL in key:
                return "a field name contains a NUL byte"
            label = f"{name}.{key}" if name else str(key)
            if (problem := nul_problem(item, label)) is not None:
                return problem
        return None
    if isinstance(value, (list, tuple)):
        for item in value:
            if (problem := nul_problem(item, name)) is not None:
                return problem
    return None


def json_nul_problem(text: str) -> str | None:
    """For a JSON line the strict parser refused: the NUL problem, named by field, if a raw NUL
    character is what it refused (JSON forbids raw control characters in strings); else None."""
    if NUL not in text:
        return None
    try:
        row = json.loads(text, strict=False)
    except ValueError:
        return "the line contains a NUL byte"
    return nul_problem(row) or "the line contains a NUL byte"

