"""Parsing import files, one line at a time: JSONL or CSV bytes → validated row tuples.

Nothing here touches the database. Every problem raises `ImportRowError` with the file's line
number, so an analyst can open the file at that line and see what is wrong.

Row format (one result-list position per row; JSONL keys or CSV header columns):

    variant    required  name of a variant of the surface (created beforehand)
    query      required  the query text (at most 2,000 characters)
    rank       required  1-based position in the variant's result list for that query
    doc_id     required  the document's id in your system
    body       required  the document text shown to judges (at most 100,000 characters)
    title, url           optional
    query_id, segment, locale   optional query attributes (segment drives stratified samples)
    served_at            optional ISO 8601 time the list was served
    fields               optional object of extra document fields (a JSON string in CSV)
"""

from __future__ import annotations

import csv
import hashlib
import json
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from django.utils.dateparse import parse_datetime

from sage.text import json_nul_problem, nul_problem

try:  # orjson parses ~5x faster than the standard library; the importer works without it
    from orjson import JSONDecodeError as _FastJSONError
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover
    _fast_loads, _FastJSONError = None, ValueError

MAX_QUERY_CHARS = 2_000
MAX_TITLE_CHARS = 2_000
MAX_URL_CHARS = 4_000
MAX_BODY_CHARS = 100_000
MAX_ID_CHARS = 200
MAX_SHORT_CHARS = 60
REQUIRED = ("variant", "query", "rank", "doc_id", "body")
OPTIONAL = ("title", "url", "query_id", "segment", "locale", "served_at", "fields")

# A parsed row is a plain tuple (the cheapest thing to build, to pickle out of a parser process and
# to hand to executemany) with these fields in this order; each comes with its type in SQLite's
# staging table. `traffic.staging` builds that table from this list and `traffic.pgimport` reads
# rows by the positions below, so the schema is written here only.
ROW_FIELDS: tuple[tuple[str, str], ...] = (
    ("line_no", "integer NOT NULL"),
    ("variant_id", "integer NOT NULL"),
    ("rank", "integer NOT NULL"),
    ("served_at", "text NULL"),
    ("query_hash", "text NOT NULL"),
    ("query_text", "text NOT NULL"),
    ("segment", "text NOT NULL"),
    ("locale", "text NOT NULL"),
    ("query_external_id", "text NOT NULL"),
    ("doc_hash", "text NOT NULL"),
    ("doc_external_id", "text NOT NULL"),
    ("title", "text NOT NULL"),
    ("body", "text NOT NULL"),
    ("url", "text NOT NULL"),
    ("fields", "text NOT NULL"),
    ("item_hash", "text NOT NULL"),
)
(LINE_NO, VARIANT_ID, RANK, SERVED_AT, QUERY_HASH, QUERY_TEXT, SEGMENT, LOCALE, QUERY_EXTERNAL_ID, DOC_HASH,
 DOC_EXTERNAL_ID, TITLE, BODY, URL, FIELDS, ITEM_HASH) = range(len(ROW_FIELDS))
if [globals()[name.upper()] for name, _ in ROW_FIELDS] != list(range(len(ROW_FIELDS))):  # pragma: no cover
    raise ImportError("traffic.rows: the row positions do not follow ROW_FIELDS")


class ImportRowError(ValueError):
    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line, self.reason = line, reason

    def __reduce__(self):  # raised in a parser process, re-raised in the importer's
        return type(self), (self.line, self.reason)


def duplicate_rank_error(rows: Iterable[tuple[int, int, Any, int, str]], *,
                         repeated_key: tuple[int, Any, int] | None = None) -> ImportRowError | None:
    """The error for a file that repeats a (variant, query, rank): both importers leave the
    detection to the unique constraint `resultentry_unique_rank` and call this to name the line.

    `rows`: (line, variant id, query key, rank, query text) in file order. The first line that
    repeats an earlier one of `rows` is named with that earlier line. Failing that, `repeated_key`
    (the key the constraint reported, when its earlier row is no longer at hand) names the first
    row with that key as repeating a row earlier in the file."""
    rows = list(rows)
    first: dict[tuple, int] = {}
    for line, variant, query, rank, text in rows:
        key = (variant, query, rank)
        if key in first:
            return _duplicate_rank(line, rank, text, f"on line {first[key]}")
        first[key] = line
    for line, variant, query, rank, text in rows:
        if (variant, query, rank) == repeated_key:
            return _duplicate_rank(line, rank, text, f"earlier in the file, before line {rows[0][0]}")
    return None


def _duplicate_rank(line: int, rank: int, query_text: str, where: str) -> ImportRowError:
    return ImportRowError(line, f"duplicate rank {rank} for this variant and query {query_text[:60]!r} "
                                f"(first given {where})")


def normalize_query(text: str) -> str:
    """What makes two query strings the same query: Unicode form, case and spacing do not count."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def query_hash(text: str) -> str:
    return hashlib.sha256(normalize_query(text).encode()).hexdigest()


def document_hash(*, doc_id: str, title: str, body: str, url: str) -> str:
    """A document's key: its id in the source system together with what it says. Two ids with the
    same text stay two documents (and so two items: a label names the id it was given for); one id
    whose text changed becomes a second document, since what was judged was the old text."""
    # Length prefixes keep ("ab", "c") and ("a", "bc") apart without escaping the text.
    h = hashlib.sha256()
    for part in (doc_id, title, url, body):
        encoded = part.encode()
        h.update(f"{len(encoded)}:".encode())
        h.update(encoded)
    return h.hexdigest()


def item_hash(query_hash_: str, document_hash_: str) -> str:
    return hashlib.sha256(f"{query_hash_}:{document_hash_}".encode()).hexdigest()


class HashingReader:
    """Yields the source's lines as bytes while hashing them and counting bytes for progress."""

    def __init__(self, source: Iterable[bytes], progress: Callable[[int], None] | None = None,
                 *, known_sha256: str | None = None) -> None:
        self.source = source
        self.sha256 = hashlib.sha256()
        self.known_sha256 = known_sha256  # hashed up front already (a seekable file): don't hash twice
        self.bytes_read = 0
        self.progress = progress

    def hexdigest(self) -> str:
        return self.known_sha256 or self.sha256.hexdigest()

    def __iter__(self) -> Iterator[bytes]:
        if self.known_sha256 is not None and self.progress is None:
            yield from self.source  # nothing to do per line
            return
        pending = 0
        update = (lambda raw: None) if self.known_sha256 is not None else self.sha256.update
        for raw in self.source:
            update(raw)
            self.bytes_read += len(raw)
            pending += len(raw)
            if self.progress is not None and pending >= 1 << 20:
                self.progress(pending)
                pending = 0
            yield raw
        if self.progress is not None and pending:
            self.progress(pending)


def decoded_lines(raw_lines: Iterable[bytes]) -> Iterator[str]:
    for line_no, raw in enumerate(raw_lines, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImportRowError(line_no, f"bad UTF-8 (byte {exc.start + 1} of the line)") from None
        if line_no == 1 and text.startswith("\ufeff"):
            text = text[1:]
        yield text


def _text(row: dict[str, Any], key: str, line: int, limit: int, *, required: bool = False) -> str:
    value = row.get(key)
    if value is None or value == "":
        if required:
            raise ImportRowError(line, f"missing field {key!r}")
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key in ("doc_id", "query_id"):
        value = str(value)
    if not isinstance(value, str):
        raise ImportRowError(line, f"{key!r} must be a string")
    if required and not value.strip():
        raise ImportRowError(line, f"missing field {key!r}")
    if len(value) > limit:
        raise ImportRowError(line, f"{key} is {len(value):,} characters; the limit is {limit:,}")
    return value


class RowParser:
    """Validates one row dict and turns it into a parsed row tuple (ROW_FIELDS, in that order)."""

    def __init__(self, *, variants: dict[str, int], adapt_datetime: Callable[[datetime], Any]) -> None:
        self.variants = variants
        self.adapt_datetime = adapt_datetime
        self._queries: dict[str, tuple[str, str]] = {}  # query text → (hash, stripped text)

    def parse(self, row: dict[str, Any], line: int) -> tuple:
        """The common case in as few Python operations as possible; anything unusual (a missing or
        non-string field, a limit, a date, extra fields) takes `parse_slow`, which has the messages."""
        get = row.get
        variant_id = self.variants.get(get("variant"))  # type: ignore[arg-type]
        query, rank, doc_id, body = get("query"), get("rank"), get("doc_id"), get("body")
        title, url = get("title", ""), get("url", "")
        segment, locale, query_id = get("segment", ""), get("locale", ""), get("query_id", "")
        if (
            variant_id is None or type(query) is not str or type(rank) is not int or type(doc_id) is not str
            or type(body) is not str or type(title) is not str or type(url) is not str
            or type(segment) is not str or type(locale) is not str or type(query_id) is not str
            or get("served_at") or get("fields")
            or not 0 < rank <= 1_000_000 or not 0 < len(body) <= MAX_BODY_CHARS
            or not 0 < len(query) <= MAX_QUERY_CHARS or not 0 < len(doc_id) <= MAX_ID_CHARS
            or len(title) > MAX_TITLE_CHARS or len(url) > MAX_URL_CHARS or len(segment) > MAX_SHORT_CHARS
            or len(locale) > 20 or len(query_id) > MAX_ID_CHARS
            or body.isspace() or doc_id.isspace()
        ):
            return self.parse_slow(row, line)
        cached = self._queries.get(query)
        if cached is None:
            if query.isspace():
                return self.parse_slow(row, line)
            if len(self._queries) >= 100_000:
                self._queries.clear()
            cached = self._queries[query] = (_checked(query_hash, query, line), query.strip())
        qh, query_text = cached
        try:
            ib, tb, ub, bb = doc_id.encode(), title.encode(), url.encode(), body.encode()
        except UnicodeEncodeError:
            raise ImportRowError(line, "bad UTF-8 (a lone surrogate escape)") from None
        # document_hash, inlined
        dh = _sha256(b"%d:%b%d:%b%d:%b%d:%b" % (len(ib), ib, len(tb), tb, len(ub), ub, len(bb), bb)).hexdigest()
        return (line, variant_id, rank, None, qh, query_text, segment, locale, query_id, dh, doc_id,
                title, body, url, "{}", _sha256(f"{qh}:{dh}".encode()).hexdigest())

    def parse_slow(self, row: dict[str, Any], line: int) -> tuple:
        variant_name = _text(row, "variant", line, MAX_SHORT_CHARS, required=True)
        variant_id = self.variants.get(variant_name)
        if variant_id is None:
            known = ", ".join(sorted(self.variants)) or "none yet: create one first"
            raise ImportRowError(line, f"unknown variant {variant_name!r} (this surface has: {known})")
        query = _text(row, "query", line, MAX_QUERY_CHARS, required=True)
        rank = row.get("rank")
        if rank is None or rank == "":
            raise ImportRowError(line, "missing field 'rank'")
        if isinstance(rank, str) and rank.strip().isdigit():
            rank = int(rank)
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= 1_000_000:
            raise ImportRowError(line, f"rank must be a whole number from 1, not {rank!r}")
        doc_id = _text(row, "doc_id", line, MAX_ID_CHARS, required=True)
        body = _text(row, "body", line, MAX_BODY_CHARS, required=True)
        title = _text(row, "title", line, MAX_TITLE_CHARS)
        url = _text(row, "url", line, MAX_URL_CHARS)
        served_at = None
        raw_served = _text(row, "served_at", line, 64)
        if raw_served:
            try:
                parsed = parse_datetime(raw_served)
            except ValueError:
                parsed = None
            if parsed is None:
                raise ImportRowError(line, f"served_at {raw_served!r} is not an ISO 8601 date-time")
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            served_at = self.adapt_datetime(parsed)
        fields = row.get("fields")
        if fields in (None, ""):
            fields_json = "{}"
        else:
            if isinstance(fields, str):
                try:
                    fields = json.loads(fields)
                except ValueError:
                    raise ImportRowError(line, "fields is not valid JSON") from None
            if not isinstance(fields, dict):
                raise ImportRowError(line, "fields must be an object")
            if (problem := nul_problem(fields, "fields")) is not None:
                raise ImportRowError(line, problem)
            fields_json = json.dumps(fields, ensure_ascii=False)
            if len(fields_json) > MAX_BODY_CHARS:
                raise ImportRowError(line, f"fields are over {MAX_BODY_CHARS:,} characters")
        qh = _checked(query_hash, query, line)
        dh = _checked(lambda _: document_hash(doc_id=doc_id, title=title, body=body, url=url), None, line)
        return (
            line, variant_id, rank, served_at, qh, query.strip(),
            _text(row, "segment", line, MAX_SHORT_CHARS), _text(row, "locale", line, 20),
            _text(row, "query_id", line, MAX_ID_CHARS), dh, doc_id, title, body, url, fields_json,
            item_hash(qh, dh),
        )


_sha256 = hashlib.sha256


def _checked(fn: Callable[[Any], str], arg: Any, line: int) -> str:
    try:
        return fn(arg)
    except UnicodeEncodeError:
        raise ImportRowError(line, "bad UTF-8 (a lone surrogate escape)") from None


def _nul_check(row: dict[str, Any], line: int) -> None:
    # Only a line holding the escape \u0000 can carry a NUL (raw ones are not JSON): a byte search
    # per line, the field walk only then. PostgreSQL stores no NUL (sage/text.py).
    if (problem := nul_problem(row)) is not None:
        raise ImportRowError(line, problem)


def iter_jsonl_bytes(raw_lines: Iterable[bytes], parser: RowParser, *, start: int = 1) -> Iterator[tuple]:
    """JSONL straight from bytes: orjson checks the UTF-8 and parses in one step. On any failure the
    line is decoded and parsed again by the standard library, which words the error (or, for what only
    it accepts, such as NaN, parses the line). `start`: the first line's number (a chunk of a file)."""
    loads, parse = _fast_loads, parser.parse
    for line_no, raw in enumerate(raw_lines, start=start):
        if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            row = loads(raw)
        except _FastJSONError:
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ImportRowError(line_no, f"bad UTF-8 (byte {exc.start + 1} of the line)") from None
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except ValueError as exc:
                raise ImportRowError(line_no, json_nul_problem(text)
                                     or f"bad JSON ({exc.msg} at column {exc.colno})") from None
        if type(row) is not dict:
            raise ImportRowError(line_no, "each line must be a JSON object")
        if b"\\u0000" in raw:
            _nul_check(row, line_no)
        yield parse(row, line_no)


def jsonl_objects(lines: Iterable[str]) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; the first bad line raises ImportRowError."""
    for line_no, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except ValueError as exc:
            raise ImportRowError(line_no, json_nul_problem(text)
                                 or f"bad JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise ImportRowError(line_no, "each line must be a JSON object")
        if "\\u0000" in text:
            _nul_check(row, line_no)
        yield line_no, row


def iter_jsonl(lines: Iterable[str], parser: RowParser) -> Iterator[tuple]:
    for line_no, row in jsonl_objects(lines):
        yield parser.parse(row, line_no)


def iter_csv(lines: Iterable[str], parser: RowParser) -> Iterator[tuple]:
    nul_seen = False  # a line held a NUL: only then are the rows' cells searched for it (_nul_check)

    def noting_nul(lines: Iterable[str]) -> Iterator[str]:
        nonlocal nul_seen
        for text in lines:
            if "\x00" in text:
                nul_seen = True
            yield text

    reader = csv.DictReader(noting_nul(lines), strict=True)
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise ImportRowError(1, f"bad CSV header ({exc})") from None
    if not header:
        raise ImportRowError(1, "the CSV file is empty; it needs a header row")
    missing = [col for col in REQUIRED if col not in header]
    if missing:
        raise ImportRowError(1, f"the CSV header lacks the required column(s) {', '.join(missing)}")
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ImportRowError(reader.line_num, f"bad CSV ({exc})") from None
        if None in row:
            raise ImportRowError(reader.line_num, "more values than header columns")
        if not any(v for v in row.values() if v):
            continue
        if nul_seen:
            _nul_check(row, reader.line_num)
        yield parser.parse(row, reader.line_num)


def iter_rows(fmt: str, raw_lines: Iterable[bytes], parser: RowParser) -> Iterator[tuple]:
    if fmt != "csv" and _fast_loads is not None:
        return iter_jsonl_bytes(raw_lines, parser)
    lines = decoded_lines(raw_lines)
    return iter_csv(lines, parser) if fmt == "csv" else iter_jsonl(lines, parser)


def format_for(filename: str) -> str | None:
    lower = filename.lower()
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if lower.endswith(".csv"):
        return "csv"
    return None
