"""Precedent import and export, JSONL and CSV.

Import is all-or-nothing: every row is parsed and validated first, each problem reported with its
line number, and nothing is written unless every row is good (a dry run stops there either way).

Row fields: query, body, rationale, labels (JSONL: an object; CSV: one `label_<dimension>` column
per dimension), and optionally title, url, clause, tags (JSONL: a list; CSV: `;`-separated),
status (`proposed` or `accepted`), metadata (JSONL: an object; CSV: a JSON string).

Re-importing is safe: a row identical to a precedent of the policy (same content hash: query,
title, body, url, labels, rationale, clause) or to an earlier row of the file is skipped and listed
as such, and a row whose query and result match a precedent with other labels or rationale is
imported but listed as a possible duplicate. CSV exports are spreadsheet-safe (`sage.csvsafe`);
the CSV importer undoes that escaping.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from django.contrib.auth.models import AbstractUser
from django.db import transaction

from policy.models import Policy
from sage.csvsafe import csv_stream, csv_unescape
from sage.jsonl import jsonl_rows
from sage.text import nul_problem

from .models import Precedent
from .services import PrecedentData, PrecedentError, _reference_version, precedent_create

MAX_IMPORT_ROWS = 10_000
CSV_FIELDS = ["id", "policy", "status", "query", "title", "body", "url", "rationale", "clause", "tags", "metadata"]


@dataclass
class ImportReport:
    rows: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    created: int = 0
    dry_run: bool = True
    to_create: int = 0
    # (line, message): rows left out because the policy (or the file, earlier) already has them.
    skipped: list[tuple[int, str]] = field(default_factory=list)
    # (line, message): rows imported, but the same query and result already exist with other labels.
    duplicates: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _rows(stream: IO[bytes], fmt: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, row dict) — or (line number, error message) for a row that can't be read."""
    if fmt == "jsonl":
        yield from jsonl_rows(stream)
        return
    try:
        reader = csv.DictReader(io.TextIOWrapper(stream, encoding="utf-8", newline=""))
        for row in reader:
            yield reader.line_num, _csv_row(row)
    except UnicodeDecodeError as exc:
        yield 0, f"the file is not UTF-8 (byte {exc.start})"


def _csv_row(row: dict[str, str]) -> dict[str, Any] | str:
    if (problem := nul_problem(row)) is not None:  # PostgreSQL stores no NUL (sage/text.py)
        return problem
    row = {key: csv_unescape(value) for key, value in row.items()}
    out: dict[str, Any] = {k: v for k, v in row.items() if k and not k.startswith("label_")}
    labels: dict[str, Any] = {}
    for key, value in row.items():
        if key and key.startswith("label_") and value not in (None, ""):
            try:
                labels[key.removeprefix("label_")] = int(value)
            except ValueError:
                return f"{key}={value!r} is not an integer"
    out["labels"] = labels
    out["tags"] = [t.strip() for t in (row.get("tags") or "").split(";") if t.strip()]
    if row.get("metadata"):
        try:
            out["metadata"] = json.loads(row["metadata"])
        except json.JSONDecodeError:
            return "metadata is not valid JSON"
    else:
        out["metadata"] = {}
    return out


def _to_data(row: dict[str, Any]) -> PrecedentData | str:
    missing = [name for name in ("query", "body", "rationale", "labels") if not row.get(name)]
    if missing:
        return f"missing {', '.join(missing)}"
    if not isinstance(row["labels"], dict):
        return "labels must be an object"
    for name in ("query", "body", "rationale", "title", "url", "clause"):
        if row.get(name) is not None and not isinstance(row[name], str):
            return f"{name} must be text"
    return PrecedentData(
        query=row["query"], body=row["body"], labels=row["labels"], rationale=row["rationale"],
        title=row.get("title") or "", url=row.get("url") or "", clause=row.get("clause") or "",
        tags=row.get("tags") or [], metadata=row.get("metadata") or {},
    )


def precedents_import(*, policy: Policy, stream: IO[bytes], fmt: str, user: AbstractUser,
                      dry_run: bool) -> ImportReport:
    if fmt not in {"jsonl", "csv"}:
        raise PrecedentError(f"Unknown format {fmt!r}: use jsonl or csv.")
    version = _reference_version(policy)
    report = ImportReport(dry_run=dry_run)
    parsed: list[tuple[PrecedentData, bool]] = []
    for number, row in _rows(stream, fmt):
        report.rows += 1
        if report.rows > MAX_IMPORT_ROWS:
            report.errors.append((number, f"more than {MAX_IMPORT_ROWS:,} rows; split the file"))
            break
        if isinstance(row, str):
            report.errors.append((number, row))
            continue
        data = _to_data(row)
        if isinstance(data, str):
            report.errors.append((number, data))
            continue
        status = row.get("status") or "proposed"
        if status not in {"proposed", "accepted"}:
            report.errors.append((number, f"status {status!r} must be proposed or accepted"))
            continue
        problems = data.problems(version)
        for name, messages in problems.items():
            for message in messages:
                report.errors.append((number, f"{name}: {message}"))
        if not problems:
            parsed.append((number, data, status == "accepted"))
    if report.errors:
        return report
    if dry_run:
        _sort_out_duplicates(policy, parsed, report)
        return report
    with transaction.atomic():
        # Imports into one policy take turns, so two uploads of one file cannot both find it new.
        Policy.objects.select_for_update().filter(pk=policy.pk).first()
        for _number, data, accept in _sort_out_duplicates(policy, parsed, report):
            precedent_create(policy=policy, data=data, user=user, provenance=Precedent.Provenance.IMPORT,
                             accept=accept, note="imported")
            report.created += 1
    return report


def _sort_out_duplicates(policy: Policy, parsed: list[tuple[int, PrecedentData, bool]],
                         report: ImportReport) -> list[tuple[int, PrecedentData, bool]]:
    """The rows to create; identical ones go to `report.skipped`, near ones also to `report.duplicates`."""
    existing = dict(Precedent.objects.filter(policy=policy).values_list("content_hash", "id"))
    same_pair: dict[tuple[str, str], int] = {
        (query, body): pk for pk, query, body in Precedent.objects.filter(policy=policy).values_list("id", "query", "body")
    }
    seen: dict[str, int] = {}
    keep = []
    for number, data, accept in parsed:
        digest = data.content_hash()
        if digest in existing:
            report.skipped.append((number, f"identical to precedent #{existing[digest]}, not imported again"))
        elif digest in seen:
            report.skipped.append((number, f"identical to line {seen[digest]}, imported once"))
        else:
            seen[digest] = number
            if (data.query, data.body) in same_pair:
                report.duplicates.append((number, f"same query and result as precedent #{same_pair[(data.query, data.body)]}, "
                                                  "with other labels, rationale or clause"))
            keep.append((number, data, accept))
    report.to_create = len(keep)
    return keep


def precedent_label_keys(precedents) -> list[str]:
    """The label columns for a CSV of `precedents` (a queryset): the union of the dimensions of
    every policy they belong to, in rubric order, then any other key a precedent carries."""
    keys: list[str] = []
    for policy in Policy.objects.filter(pk__in=precedents.values("policy")).order_by("pk"):
        version = policy.latest_published()
        for key in (version.parsed_rubric().keys if version else []):
            if key not in keys:
                keys.append(key)
    extra = {key for labels in precedents.values_list("labels", flat=True) for key in (labels or {})}
    return keys + sorted(extra - set(keys))


def precedents_export(precedents, fmt: str, dimension_keys: list[str]) -> Iterator[str]:
    """Yield the file in chunks (a streaming response); re-importable with `precedents_import`."""
    if fmt == "jsonl":
        for p in precedents:
            yield json.dumps({
                "id": p.pk, "policy": p.policy.slug, "status": p.status, "query": p.query, "title": p.title,
                "body": p.body, "url": p.url, "labels": p.labels, "rationale": p.rationale, "clause": p.clause,
                "tags": p.tags, "metadata": p.metadata,
            }, ensure_ascii=False) + "\n"
        return
    yield from csv_stream(CSV_FIELDS + [f"label_{k}" for k in dimension_keys], ({
        "id": p.pk, "policy": p.policy.slug, "status": p.status, "query": p.query, "title": p.title, "body": p.body,
        "url": p.url, "rationale": p.rationale, "clause": p.clause, "tags": ";".join(p.tags),
        "metadata": json.dumps(p.metadata) if p.metadata else "",
        **{f"label_{k}": p.labels.get(k, "") for k in dimension_keys},
    } for p in precedents))
