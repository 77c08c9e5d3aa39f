"""Judge labels in and out: other tools' files as an imported judge run, any run's judgments as a file.

Import reads JSONL, CSV or TREC qrels, maps another tool's field names onto SAGE's row shape,
and hands the rows to `judge_run_import` (all rows or none; a dry run writes nothing). SAGE's row:

    {"query_id": "2001", "doc_id": "msmarco_passage_00_1", "labels": {"relevance": 2}, "rationale": "…"}

- JSONL: one such object per line. `label: N` is short for the overall dimension.
- CSV: a header row; `query_id`, `doc_id`, one `label_<dimension>` column per dimension, `rationale`.
- qrels: TREC's `query_id iteration doc_id label`, whitespace-separated; the label is the overall one.

A `FieldMapping` renames: `query_field` / `doc_field` / `rationale_field` name the source's columns,
and `label_fields` maps a dimension to a column (`relevance=gpt4o`). In JSONL a mapped label is
looked up at the top level first, then inside the row's `labels` object, so a file with one label
per run (`"labels": {"run-a": 2, "run-b": 3}`) loads one run at a time.

Exports are the same shape (a JSONL export re-imports as is) plus what SAGE knows of each judgment;
CSV exports are spreadsheet-safe (`sage.csvsafe`).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from django.contrib.auth.models import AbstractUser

from policy.rubric import Rubric
from sage.csvsafe import csv_unescape, labelled_rows_export
from sage.jsonl import jsonl_rows
from sage.text import nul_problem
from traffic.models import Sample

from .models import JudgeRun, JudgeVersion, Judgment
from .services import JudgeError, LabelImportReport, judge_run_import

FORMATS = ("jsonl", "csv", "qrels")
PREVIEW_ROWS = 10
_COLUMN = re.compile(r"^[\w .:@+\-/]{1,100}$")


def format_for(filename: str, given: str = "") -> str:
    """The format named, else the one the file name says (`.csv`, `.qrels`/`.txt`), else JSONL."""
    if given:
        if given not in FORMATS:
            raise JudgeError(f"Unknown format {given!r}: use {', '.join(FORMATS)}.")
        return given
    name = filename.lower()
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".qrels", ".txt", ".tsv")):
        return "qrels"
    return "jsonl"


@dataclass(frozen=True)
class FieldMapping:
    query_field: str = "query_id"
    doc_field: str = "doc_id"
    rationale_field: str = "rationale"
    label_fields: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, *, label_fields: Iterable[str] = (), query_field: str = "", doc_field: str = "",
              rationale_field: str = "", rubric: Rubric) -> FieldMapping:
        """From `dimension=column` strings (a form's lines, a CLI's repeated flag); JudgeError names the bad one."""
        labels: dict[str, str] = {}
        for spec in label_fields:
            spec = spec.strip()
            if not spec:
                continue
            dimension, sep, column = (part.strip() for part in spec.partition("="))
            if not sep or not dimension or not column:
                raise JudgeError(f"Label field {spec!r}: write dimension=column, e.g. relevance=score.")
            if rubric.dimension(dimension) is None:
                raise JudgeError(f"Label field {spec!r}: no dimension {dimension!r} in the rubric "
                                 f"(dimensions: {', '.join(rubric.keys)}).")
            labels[dimension] = column
        names = {"query_field": query_field or "query_id", "doc_field": doc_field or "doc_id",
                 "rationale_field": rationale_field or "rationale"}
        for name in [*names.values(), *labels.values()]:
            if not _COLUMN.match(name):
                raise JudgeError(f"{name!r} is not a column name SAGE can read.")
        return cls(label_fields=labels, **names)

    def describe(self) -> list[str]:
        return [f"{self.query_field} → query_id", f"{self.doc_field} → doc_id",
                *(f"{column} → labels.{dim}" for dim, column in self.label_fields.items()),
                f"{self.rationale_field} → rationale"]


def _level(value: Any, where: str) -> int | str:
    """An integer level from a JSON number or a CSV cell ("2", "2.0"), else the problem."""
    if isinstance(value, bool):
        return f"{where}={value!r} is not an integer level"
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            return f"{where}={value!r} is not an integer level"
        if number.is_integer():
            return int(number)
    return f"{where}={value!r} is not an integer level"


def _canonical(row: dict[str, Any], mapping: FieldMapping, rubric: Rubric, *, csv_columns: bool) -> dict | str:
    """SAGE's row from a source row, or the problem with it."""
    labels: dict[str, Any] = {}
    if mapping.label_fields:
        nested = row.get("labels") if isinstance(row.get("labels"), dict) else {}
        for dim, column in mapping.label_fields.items():
            value = row[column] if column in row else nested.get(column)
            if value in (None, ""):
                return f"no value in {column!r} (mapped to {dim})"
            labels[dim] = value
    elif csv_columns:
        labels = {key.removeprefix("label_"): value for key, value in row.items()
                  if key and key.startswith("label_") and value not in (None, "")}
    elif "labels" in row:
        labels = row["labels"]
    elif "label" in row:
        labels = {rubric.overall.key: row["label"]}
    if not isinstance(labels, dict):
        return "labels must be an object mapping dimension keys to levels"
    if csv_columns or mapping.label_fields:
        converted = {}
        for dim, value in labels.items():
            level = _level(value, mapping.label_fields.get(dim, f"label_{dim}" if csv_columns else dim))
            if isinstance(level, str):
                return level
            converted[dim] = level
        labels = converted
    # An empty query id is a value: traffic imported without query ids has only empty ones.
    for name, required in ((mapping.query_field, name_present), (mapping.doc_field, value_present)):
        if not required(row, name):
            return f"missing field {name!r}" + (" (see the field mapping)" if name not in ("query_id", "doc_id") else "")
    return {"query_id": str(row[mapping.query_field]).strip(), "doc_id": str(row[mapping.doc_field]).strip(),
            "labels": labels, "rationale": str(row.get(mapping.rationale_field) or "")}


def name_present(row: dict[str, Any], name: str) -> bool:
    return row.get(name) is not None


def value_present(row: dict[str, Any], name: str) -> bool:
    return row.get(name) not in (None, "")


def _decoded(stream: Iterable[bytes]) -> Iterator[str]:
    for number, raw in enumerate(stream, start=1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"line {number}: not UTF-8 (byte {exc.start})") from None


def judgment_rows(stream: IO[bytes] | Iterable[bytes], *, fmt: str, mapping: FieldMapping,
                  rubric: Rubric) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, SAGE row) for each row of the file, or (line number, problem)."""
    if fmt == "jsonl":
        for number, row in jsonl_rows(stream):
            yield number, row if isinstance(row, str) else _canonical(row, mapping, rubric, csv_columns=False)
        return
    if fmt == "qrels":
        for number, raw in enumerate(stream, start=1):
            try:
                parts = raw.decode("utf-8").split()
            except UnicodeDecodeError as exc:
                yield number, f"not UTF-8 (byte {exc.start})"
                continue
            if not parts or parts[0].startswith("#"):
                continue
            if len(parts) != 4:
                yield number, f"a qrels line has 4 fields (query_id iteration doc_id label), not {len(parts)}"
                continue
            if (problem := nul_problem(dict(zip(("query_id", "iteration", "doc_id", "label"), parts)))) is not None:
                yield number, problem  # PostgreSQL stores no NUL (sage/text.py)
                continue
            level = _level(parts[3], "label")
            yield number, level if isinstance(level, str) else {
                "query_id": parts[0], "doc_id": parts[2], "labels": {rubric.overall.key: level}, "rationale": ""}
        return
    reader = csv.DictReader(_decoded(stream))
    try:
        header = reader.fieldnames or []
        missing = [c for c in (mapping.query_field, mapping.doc_field, *mapping.label_fields.values()) if c not in header]
        if missing:
            yield 1, f"the header has no column {', '.join(map(repr, missing))} (columns: {', '.join(header)})"
            return
        for row in reader:
            if None in row or None in row.values():  # more cells than the header, or fewer
                cells = len(header) + len(row[None]) if None in row else sum(v is not None for v in row.values())
                yield reader.line_num, f"{cells} fields; the header has {len(header)} ({', '.join(header)})"
                continue
            if (problem := nul_problem(row)) is not None:
                yield reader.line_num, problem  # PostgreSQL stores no NUL (sage/text.py)
                continue
            row = {key: csv_unescape(value) for key, value in row.items()}
            yield reader.line_num, _canonical(row, mapping, rubric, csv_columns=True)
    except ValueError as exc:  # bad UTF-8, raised by _decoded with its line
        number, _, message = str(exc).partition(": ")
        yield int(number.removeprefix("line ")), message
    except csv.Error as exc:
        yield reader.line_num, f"not valid CSV ({exc})"


@dataclass
class JudgmentImport:
    """What an import did, or on a dry run would do: the service's report, a preview, the mapping."""

    report: LabelImportReport
    dry_run: bool
    preview: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.report.errors


def judgments_import(*, version: JudgeVersion, sample: Sample, stream: IO[bytes] | Iterable[bytes], fmt: str,
                     mapping: FieldMapping, user: AbstractUser | None, skip_unmatched: bool = False,
                     dry_run: bool = False) -> JudgmentImport:
    """Map the file's rows and import them as one finished run of an imported judge (all or nothing)."""
    rubric = version.policy_version.parsed_rubric()
    preview: list[dict[str, Any]] = []

    def rows() -> Iterator[tuple[int, dict[str, Any] | str]]:
        for number, row in judgment_rows(stream, fmt=fmt, mapping=mapping, rubric=rubric):
            if isinstance(row, dict) and len(preview) < PREVIEW_ROWS:
                preview.append({"line": number, **row})
            yield number, row

    report = judge_run_import(version=version, sample=sample, stream=None, rows=rows(), user=user,
                              skip_unmatched=skip_unmatched, dry_run=dry_run)
    return JudgmentImport(report=report, dry_run=dry_run, preview=preview)


# --- export ----------------------------------------------------------------------------------------

def run_judgments_export(run: JudgeRun, fmt: str) -> Iterator[str]:
    """Every judgment of the run, in item order; errors too (status, kind, message, no labels)."""
    keys = run.judge_version.policy_version.parsed_rubric().keys
    judgments = (Judgment.objects.filter(run=run).select_related("item__query", "item__document")
                 .order_by("item__query__external_id", "item_id").iterator(chunk_size=2000))

    def row(j: Judgment) -> dict[str, Any]:
        return {"query_id": j.item.query.external_id, "doc_id": j.item.document.external_id,
                "labels": j.labels, "rationale": j.rationale, "status": j.status, "error_kind": j.error_kind,
                "error_message": j.error_message, "query": j.item.query.text, "item": j.item_hash,
                "run": run.pk, "judge_version": str(run.judge_version), "policy_version": j.policy_version_id,
                "tokens_in": j.tokens_in, "tokens_out": j.tokens_out, "latency_ms": j.latency_ms,
                "cached": j.cached_from_id is not None}

    header = ["query_id", "doc_id", *(f"label_{k}" for k in keys), "rationale", "status", "error_kind",
              "error_message", "query", "item", "run", "judge_version", "policy_version", "tokens_in",
              "tokens_out", "latency_ms", "cached"]
    yield from labelled_rows_export((row(j) for j in judgments), fmt, header=header, label_keys=keys)
