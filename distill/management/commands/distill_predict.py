"""Score a JSONL of (query, passage) pairs with a student model, offline: the bulk labelling path.

    manage.py distill_predict MODEL pairs.jsonl --output labels.jsonl

MODEL is a model folder (manifest.json, weights, tokenizer) or a StudentModel's name or id. Every input
line is checked before the first pair is scored (a missing field or a line that is not a JSON object
stops it with the line number), and the labels are written to a temporary file beside the output that
is renamed into place only when every pair is done: a failure or Ctrl-C leaves no partial output.
Lines are read and scored in chunks, so the input may be far larger than memory.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

REQUIRED = ("query_id", "query", "doc_id", "body")
# Pairs per predict() call: enough for long length-sorted runs (little padding), little memory.
CHUNK_PAIRS = 4096
MAX_ERRORS_SHOWN = 20


class InputError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


def parse_line(raw: bytes, number: int) -> dict[str, Any] | None:
    """The pair on one input line, or None for a blank line. Raises InputError."""
    if not raw.strip():
        return None
    try:
        row = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputError(number, f"not valid JSON ({exc})") from None
    if not isinstance(row, dict):
        raise InputError(number, f"expected a JSON object, got {type(row).__name__}")
    missing = [field for field in REQUIRED if field not in row]
    if missing:
        raise InputError(number, f"missing field(s) {', '.join(missing)}")
    for field in ("query_id", "doc_id"):
        if isinstance(row[field], bool) or not isinstance(row[field], (str, int)) or row[field] == "":
            raise InputError(number, f"{field} must be a non-empty string or an integer")
    for field in ("query", "body", "title"):
        if field in row and not isinstance(row[field], str):
            raise InputError(number, f"{field} must be a string")
    if not row["query"].strip():
        raise InputError(number, "query is empty")
    if not (row["body"].strip() or (row.get("title") or "").strip()):
        raise InputError(number, "body (and title) are empty")
    return row


def read_pairs(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            row = parse_line(raw, number)
            if row is not None:
                yield number, row


def check_input(path: Path) -> tuple[int, list[InputError]]:
    """(pairs, problems) over the whole file, streaming; the first MAX_ERRORS_SHOWN problems are kept."""
    pairs, problems = 0, []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                if parse_line(raw, number) is not None:
                    pairs += 1
            except InputError as exc:
                problems.append(exc)
                if len(problems) >= MAX_ERRORS_SHOWN:
                    break
    return pairs, problems


class Command(BaseCommand):
    help = ("Label a JSONL of {query_id, query, doc_id, title?, body} lines with a student model, writing "
            "{query_id, doc_id, labels} lines. All lines are checked first; the output appears only complete.")

    def add_arguments(self, parser: CommandParser) -> None:
        from distill.core.predict import QUANTIZE_CHOICES

        parser.add_argument("model", help="a student model folder, or a StudentModel's name or id")
        parser.add_argument("input", type=Path, help="pairs, one JSON object per line")
        parser.add_argument("--output", type=Path, required=True, help="where the labels go (JSONL)")
        parser.add_argument("--quantize", choices=QUANTIZE_CHOICES, default="auto",
                            help="execution path (default auto: the measured fastest on CPU, bf16 on CUDA)")
        parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
        parser.add_argument("--batch-size", type=int, default=None, help="pairs per forward pass")
        parser.add_argument("--chunk", type=int, default=CHUNK_PAIRS, help="pairs read and scored at a time")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")

    def handle(self, *args, **options) -> None:
        source: Path = options["input"]
        output: Path = options["output"]
        if not source.is_file():
            raise CommandError(f"{source} is not a file")
        if options["chunk"] < 1 or (options["batch_size"] is not None and options["batch_size"] < 1):
            raise CommandError("--chunk and --batch-size must be at least 1")
        if not output.parent.is_dir():
            raise CommandError(f"the output's folder {output.parent} does not exist")
        model_dir = self._model_dir(options["model"])
        total, problems = check_input(source)
        if problems:
            for problem in problems:
                self.stderr.write(f"{source.name}:{problem.line}: {str(problem).split(': ', 1)[1]}")
            more = f" (stopped after the first {MAX_ERRORS_SHOWN})" if len(problems) >= MAX_ERRORS_SHOWN else ""
            raise CommandError(f"{len(problems)} bad line(s) in {source.name}{more}, first at line "
                               f"{problems[0].line}; nothing was written.")

        from distill.core.predict import Pair, load_predictor

        try:
            predictor = load_predictor(model_dir, quantize=options["quantize"], device=options["device"])
        except (ValueError, OSError) as exc:
            raise CommandError(f"cannot load the model in {model_dir}: {exc}") from None
        handle, temporary = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent)
        try:
            with os.fdopen(handle, "wb") as out, tqdm(total=total, unit="pair", desc=source.name,
                                                     disable=options["no_progress"], file=self.stderr._out) as bar:
                chunk: list[dict[str, Any]] = []

                def flush() -> None:
                    predictions = predictor.predict(
                        [Pair(query=r["query"], title=r.get("title") or "", body=r["body"]) for r in chunk],
                        batch_size=options["batch_size"], progress=bar.update)
                    out.write(b"".join(orjson.dumps({"query_id": r["query_id"], "doc_id": r["doc_id"],
                                                     "labels": p.labels}) + b"\n"
                                       for r, p in zip(chunk, predictions, strict=True)))
                    chunk.clear()

                try:
                    for _, row in read_pairs(source):
                        chunk.append(row)
                        if len(chunk) >= options["chunk"]:
                            flush()
                except InputError as exc:  # the file changed since it was checked
                    raise CommandError(f"{source.name}: {exc}; nothing was written.") from None
                if chunk:
                    flush()
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, output)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self.stdout.write(self.style.SUCCESS(
            f"Labelled {total} pair(s) with model {predictor.model_hash[:12]} ({predictor.quantize} on "
            f"{predictor.device}) into {output}."))

    def _model_dir(self, name: str) -> Path:
        path = Path(name)
        if path.is_dir():
            if not (path / "manifest.json").is_file():
                raise CommandError(f"{path} is not a student model folder (no manifest.json)")
            return path
        from distill.models import StudentModel

        student = (StudentModel.objects.filter(pk=int(name)).first() if name.isdigit() else None) \
            or StudentModel.objects.filter(name=name).first()
        if student is None:
            raise CommandError(f"{name!r} is neither a model folder nor a student model's name or id")
        if not student.model_dir:
            raise CommandError(f"student model {student.name!r} has no model files yet (status {student.status})")
        from distill.selectors import student_model_path

        return student_model_path(student)
