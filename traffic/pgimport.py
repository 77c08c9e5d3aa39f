"""PostgreSQL import: rows go straight into the final tables by binary COPY, batch by batch, while
the next batches are parsed — in a separate process for JSONL, on a thread for CSV.

Why not a staging table and INSERT … SELECT (what `traffic.staging` does for SQLite): the server
then works alone once the file is parsed — it writes every row twice and hash-joins the whole
document and item tables — while the client's core sits idle. Here the client resolves every id
itself (rows that exist by one index lookup per batch, new rows from their tables' sequences), so
the server only writes each row once, and its work overlaps the parsing.

The import holds `SHARE ROW EXCLUSIVE` on the query, document and item tables from its first
statement to commit (`_lock_shared_tables`): no other import can insert a row between this
one's lookup and its COPY, and no one else draws from those tables' sequences, so what the client
knows of them stays true until commit. Figures: BENCHMARKS.md and bench/README_traffic.md.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import re
import struct
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain, islice
from multiprocessing import forkserver

import numpy as np
import psycopg
from django.conf import settings
from django.db import connection

from judges.core.injection import detect_document

from . import rows as row_format
from .rows import ImportRowError, RowParser, duplicate_rank_error, iter_jsonl_bytes, iter_rows
from .rows import BODY, DOC_EXTERNAL_ID as DEXT, DOC_HASH as DHASH, FIELDS, ITEM_HASH as IHASH, LINE_NO as LINE
from .rows import LOCALE, QUERY_EXTERNAL_ID as QEXT, QUERY_HASH as QHASH, QUERY_TEXT as QTEXT, RANK, SEGMENT
from .rows import SERVED_AT as SERVED, TITLE, URL, VARIANT_ID as VARIANT

logger = logging.getLogger(__name__)

# Rows (lines) per batch, and a cap on a batch's text so that 100,000-character bodies keep it small.
BATCH_ROWS = 20_000
BATCH_CHARS = 32_000_000
# The rows of a batch parsed while the writer waits for it: the first ones, and those parsed in the
# importer's process while the parser process starts. Once that runs, each next one is 1.5x as big,
# up to BATCH_ROWS: with the server busy, the parser process takes about as long to parse a chunk
# as the writer takes to write one 1.5x smaller (2x left the writer waiting at each step).
FIRST_BATCH_ROWS = 1_000
# Parsed batches waiting for the writer: parsing runs at most this far ahead of the server.
AHEAD = 2
# A list parameter, sent as one comma-separated string: psycopg dumps a Python list element by
# element in Python, which cost more than the lookup it fed (hashes and ids hold no commas).
_ARRAY = "string_to_array(%s, ',')"
# Documents per write to a COPY.
COPY_CHUNK = 1_000

# Binary COPY: a signature, flags and header extension length; then per row its field count and
# each field's length and bytes; the trailer is a field count of -1.
_HEADER = b"PGCOPY\n\xff\r\n\0" + struct.pack("!ii", 0, 0)
_TRAILER = struct.pack("!h", -1)
_LENGTH = struct.Struct("!i").pack
_ROW_ID = struct.Struct("!hiq").pack  # a row's field count, then a bigint id as its first field
_JSONB_VERSION = "\x01"  # jsonb's binary form is a version byte before the JSON text


def _binary_fields(*values: str) -> bytes:
    """Text fields in binary COPY form."""
    parts = []
    for value in values:
        data = value.encode()
        parts.append(_LENGTH(len(data)))
        parts.append(data)
    return b"".join(parts)


_BOOL = {False: _LENGTH(1) + b"\x00", True: _LENGTH(1) + b"\x01"}


def _injection_fields(title: str, body: str) -> bytes:
    """A document's injection_flag and injection_reasons in binary COPY form. Worked out here, in the
    parser (a process of its own for JSONL), so the writer and the server do not wait on it."""
    codes = detect_document(title, body)
    return _BOOL[bool(codes)] + _binary_fields(",".join(codes))


@dataclass
class _Batch:
    """One batch of parsed rows, reduced to what the writer needs, all of it worked out away from
    the database (and picklable, to come back from a parser process). The batch's distinct queries,
    documents and items are numbered in order of first appearance, and every row and item points at
    them by number, so the writer resolves ids with numpy indexing, not a Python loop per row."""

    lines: np.ndarray  # per row: its line in the file
    query_hashes: list[str]
    queries: list[bytes]  # per query: its binary COPY fields after the id
    query_texts: list[str]
    document_hashes: list[str]
    documents: list[bytes]  # per document: its binary COPY fields after the id
    item_hashes: list[str]
    item_query: np.ndarray  # per item: its query's number
    item_document: np.ndarray  # per item: its document's number
    row_query: np.ndarray  # per row: its query's number
    row_item: np.ndarray  # per row: its item's number
    variants: set[int]
    variant_ids: np.ndarray
    ranks: np.ndarray
    served: np.ndarray | None  # microseconds since 2000-01-01 UTC; None when no row has a time

    @classmethod
    def from_rows(cls, rows: list[tuple]) -> _Batch:
        qnum: dict[str, int] = {}
        dnum: dict[str, int] = {}
        inum: dict[str, int] = {}
        queries: list[bytes] = []
        query_texts: list[str] = []
        documents: list[bytes] = []
        item_query: list[int] = []
        item_document: list[int] = []
        row_query: list[int] = []
        row_item: list[int] = []
        for row in rows:
            qh, dh, ih = row[QHASH], row[DHASH], row[IHASH]
            q = qnum.get(qh)
            if q is None:  # the first row of a query (or document) supplies its attributes
                q = qnum[qh] = len(queries)
                queries.append(_binary_fields(row[QTEXT], qh, row[SEGMENT], row[LOCALE], row[QEXT]))
                query_texts.append(row[QTEXT])
            i = inum.get(ih)
            if i is None:
                d = dnum.get(dh)
                if d is None:
                    d = dnum[dh] = len(documents)
                    documents.append(_binary_fields(dh, row[DEXT], row[TITLE], row[BODY], row[URL],
                                                    _JSONB_VERSION + row[FIELDS])
                                     + _injection_fields(row[TITLE], row[BODY]))
                i = inum[ih] = len(item_query)
                item_query.append(q)
                item_document.append(d)
            row_query.append(q)
            row_item.append(i)
        n = len(rows)
        served = None
        if any(row[SERVED] is not None for row in rows):
            served = np.fromiter((_micros(row[SERVED]) for row in rows), np.int64, n)
        return cls(
            lines=np.fromiter((row[LINE] for row in rows), np.int64, n),
            query_hashes=list(qnum), queries=queries, query_texts=query_texts,
            document_hashes=list(dnum), documents=documents, item_hashes=list(inum),
            item_query=np.array(item_query, np.intp), item_document=np.array(item_document, np.intp),
            row_query=np.array(row_query, np.intp), row_item=np.array(row_item, np.intp),
            variants={row[VARIANT] for row in rows}, variant_ids=np.fromiter((row[VARIANT] for row in rows), np.int64, n),
            ranks=np.fromiter((row[RANK] for row in rows), np.int32, n), served=served,
        )

    def __len__(self) -> int:
        return len(self.lines)


def _batches(rows: Iterable[tuple]) -> Iterator[_Batch]:
    batch: list[tuple] = []
    chars = 0
    for row in rows:
        batch.append(row)
        chars += len(row[BODY])
        if len(batch) >= BATCH_ROWS or chars >= BATCH_CHARS:
            yield _Batch.from_rows(batch)
            batch, chars = [], 0
    if batch:
        yield _Batch.from_rows(batch)


class _LineChunks:
    """The file's lines as (lines, number of the first) in chunks of `limit` lines (fewer when they
    reach BATCH_CHARS of text). The consumer sets `limit` for the chunks it reads next: small ones
    while a chunk's parse holds up the writer, batch-sized ones once parsing runs ahead of it."""

    def __init__(self, raw_lines: Iterable[bytes], limit: int) -> None:
        self.raw_lines = iter(raw_lines)
        self.limit = limit
        self.first = 1

    def __iter__(self) -> _LineChunks:
        return self

    def __next__(self) -> tuple[list[bytes], int]:
        lines: list[bytes] = []
        size = 0
        for raw in self.raw_lines:
            lines.append(raw)
            size += len(raw)
            if len(lines) >= self.limit or size >= BATCH_CHARS:
                break
        if not lines:
            raise StopIteration
        first, self.first = self.first, self.first + len(lines)
        return lines, first


# The parser process: started from a fork server that has this module loaded already, so a worker
# starts in milliseconds and inherits nothing from the importer (no database connection, no threads).
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload([__name__])
_worker_parser: RowParser | None = None


def _unchanged(value: object) -> object:
    return value


def _start_worker(variants: dict[str, int]) -> None:
    global _worker_parser
    _worker_parser = RowParser(variants=variants, adapt_datetime=_unchanged)


def _parse_chunk(lines: list[bytes], first: int, parser: RowParser | None = None) -> _Batch:
    return _Batch.from_rows(list(iter_jsonl_bytes(lines, parser or _worker_parser, start=first)))


class _ProcessParser:
    """JSONL: chunks of lines are parsed in a separate process while the writer writes, so the two
    never wait for each other's GIL (on a thread, the parser held it most of the time the writer
    needed it). A JSONL record is one line, so chunks parse apart; a file of one chunk is parsed here.
    The importer's own thread reads the file (hashing it and reporting progress as before)."""

    def __init__(self, raw_lines: Iterable[bytes], parser: RowParser) -> None:
        self.raw_lines, self.parser = raw_lines, parser
        self.pool: ProcessPoolExecutor | None = None
        self.starter: threading.Thread | None = None
        self.started = threading.Event()
        self.start_error: BaseException | None = None

    def __iter__(self) -> Iterator[_Batch]:
        chunks = _LineChunks(self.raw_lines, limit=min(FIRST_BATCH_ROWS, BATCH_ROWS))
        # Chunks read but not yet handed to the writer, oldest first. Reading stays outside the
        # `except` below: a file that fails to read fails the import, it is never cut short.
        pending = deque(islice(chunks, 2))
        if len(pending) < 2:
            yield from self._here(pending)
            return
        self.starter = threading.Thread(target=self._start_pool, name="traffic-import-parser-start", daemon=True)
        self.starter.start()
        # The parser process takes a few tenths of a second to start the first time (a Python
        # interpreter importing this module); meanwhile small chunks are parsed here, so the
        # server has rows to write after milliseconds.
        while pending and not self.started.is_set():
            yield from self._here([pending.popleft()])
            if not pending:
                pending.extend(islice(chunks, 1))
        self.starter.join()
        failed = self.start_error
        parses: deque[Future] = deque()  # the parses of pending's first chunks, in the worker
        while pending and failed is None:
            self._read_ahead(chunks, pending)
            try:
                self._submit(pending, parses)
                batch = parses[0].result()
            except (BrokenProcessPool, OSError) as exc:
                failed = exc
                break
            parses.popleft()
            pending.popleft()
            # The next chunk is read and queued before this batch is written: the worker parses
            # while the server writes. A failed submit shows again at the next result.
            self._read_ahead(chunks, pending)
            with suppress(BrokenProcessPool, OSError):
                self._submit(pending, parses)
            if len(batch):
                yield batch
        if failed is not None:
            # No parser process (it could not start, or died): the chunks not yet written are
            # parsed here instead, slower but the same.
            logger.warning("traffic import: parsing in-process, the parser process failed (%s)", failed)
            yield from self._here(chain(pending, chunks))

    @staticmethod
    def _read_ahead(chunks: _LineChunks, pending: deque[tuple[list[bytes], int]]) -> None:
        """Keep AHEAD + 1 chunks read, each 1.5x as big as the last (FIRST_BATCH_ROWS)."""
        while len(pending) <= AHEAD and (chunk := next(chunks, None)) is not None:
            pending.append(chunk)
            chunks.limit = min(chunks.limit * 3 // 2, BATCH_ROWS)

    def _submit(self, pending: deque[tuple[list[bytes], int]], parses: deque[Future]) -> None:
        while len(parses) < len(pending):
            parses.append(self.pool.submit(_parse_chunk, *pending[len(parses)]))

    def _start_pool(self) -> None:
        """On a thread: start the parser process and wait until it runs (or fails to)."""
        try:
            self.pool = ProcessPoolExecutor(max_workers=1, mp_context=_CONTEXT, initializer=_start_worker,
                                            initargs=(self.parser.variants,))
            self.pool.submit(_unchanged, None).result()
        except Exception as exc:
            self.start_error = exc
        finally:
            self.started.set()

    def _here(self, chunks: Iterable[tuple[list[bytes], int]]) -> Iterator[_Batch]:
        for lines, first_line in chunks:
            batch = _parse_chunk(lines, first_line, parser=self.parser)
            if len(batch):
                yield batch

    def stop(self) -> None:
        if self.starter is not None:
            self.starter.join()
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


class _Parser(threading.Thread):
    """Runs the row iterator (read, parse, validate, hash: Python only, no database) on a thread and
    hands batches over through a bounded queue; an exception is handed over in their place."""

    _DONE = object()

    def __init__(self, rows: Iterable[tuple]) -> None:
        super().__init__(name="traffic-import-parser", daemon=True)
        self.rows = rows
        self.queue: queue.Queue = queue.Queue(maxsize=AHEAD)
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            for batch in _batches(self.rows):
                if not self._put(batch):
                    return
            self._put(self._DONE)
        except BaseException as exc:  # raised again in the writer's thread, where the caller is
            self._put(exc)

    def _put(self, item: object) -> bool:
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[_Batch]:
        self.start()
        while (item := self.queue.get()) is not self._DONE:
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        self.stopped.set()
        if self.is_alive():
            self.join()


@dataclass
class _Writer:
    cursor: psycopg.Cursor
    import_id: int
    lock_variants: bool
    locked_variants: set[int] = field(default_factory=set)
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("new_queries", "new_documents", "new_items", "entries"), 0))
    rows: int = 0
    # The last batch's documents were all new: try the next batch's without looking them up first.
    optimistic: bool = False

    def write(self, batch: _Batch) -> None:
        if self.lock_variants:
            self._lock_variants(batch)
        query_ids = self._queries(batch)
        document_ids, existed = self._documents(batch)
        item_ids = self._items(batch, query_ids, document_ids, existed)
        self._entries(batch, query_ids, item_ids)
        self.rows += len(batch)

    def _lock_variants(self, batch: _Batch) -> None:
        """FOR KEY SHARE on the variants the rows name: what their foreign-key checks would lock."""
        wanted = batch.variants - self.locked_variants
        if not wanted:
            return
        self.cursor.execute(f"SELECT id FROM traffic_variant WHERE id = ANY({_ARRAY}::bigint[]) FOR KEY SHARE",
                            [",".join(map(str, wanted))])
        if len(self.cursor.fetchall()) != len(wanted):
            raise ImportRowError(int(batch.lines[0]), "a variant named in the file was deleted while it was being imported")
        self.locked_variants |= wanted

    def _ids(self, sql: str, params: list[str]) -> np.ndarray:
        """The ids a lookup finds, one per key in the order given; 0 where there is none. They come
        back as one comma-separated string, which numpy reads in one call."""
        self.cursor.execute(sql, params)
        found = self.cursor.fetchone()[0]
        return np.fromstring(found, dtype=np.int64, sep=",") if found else np.zeros(0, np.int64)

    def _existing(self, table: str, column: str, hashes: list[str]) -> np.ndarray:
        return self._ids(
            f"SELECT string_agg(COALESCE(t.id, 0)::text, ',' ORDER BY u.n) FROM unnest({_ARRAY}) "
            f"WITH ORDINALITY AS u(key, n) LEFT JOIN {table} t ON t.{column} = u.key", [",".join(hashes)])

    def _new_ids(self, table: str, n: int) -> np.ndarray:
        """n consecutive ids from the table's sequence, in one statement. Safe because the import
        holds the table's SHARE ROW EXCLUSIVE lock: nothing else inserts, so nothing else draws."""
        self.cursor.execute(f"SELECT setval('{table}_id_seq', nextval('{table}_id_seq') + %s - 1)", [n])
        last = self.cursor.fetchone()[0]
        return np.arange(last - n + 1, last + 1, dtype=np.int64)

    def _copy(self, table: str, columns: str, chunks: Iterable[bytes]) -> None:
        """Binary COPY: no text escaping on our side, no text parsing on the server's."""
        with self.cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT binary)") as copy:
            copy.write(_HEADER)
            for chunk in chunks:
                copy.write(chunk)
            copy.write(_TRAILER)

    def _queries(self, batch: _Batch) -> np.ndarray:
        ids = self._existing("traffic_query", "text_hash", batch.query_hashes)
        fresh = np.flatnonzero(ids == 0)
        if len(fresh):
            ids[fresh] = self._new_ids("traffic_query", len(fresh))
            fields = batch.queries
            self._copy("traffic_query", "id, text, text_hash, segment, locale, external_id", (
                _ROW_ID(6, 8, i) + fields[k] for i, k in zip(ids[fresh].tolist(), fresh.tolist())))
            self.stats["new_queries"] += len(fresh)
        return ids

    def _documents(self, batch: _Batch) -> tuple[np.ndarray, np.ndarray]:
        """(every document's id, in the batch's numbering; which of them existed before the batch).

        While batches bring only new documents (a file of new traffic), the lookup, which then
        finds nothing, is skipped: the COPY runs in a savepoint, and the unique index on the hash
        refuses a document that exists after all; then the batch is undone and looked up."""
        if self.optimistic:
            # Ids for every document of the batch; if the batch is undone they stay unused (a gap
            # in the sequence, as any rolled-back insert leaves).
            ids = self._new_ids("traffic_document", len(batch.documents))
            self.cursor.execute("SAVEPOINT traffic_import_documents")
            try:
                self._copy_documents(batch, ids, np.arange(len(ids)))
            except psycopg.errors.UniqueViolation as exc:
                if exc.diag.table_name != "traffic_document":
                    raise
                self.cursor.execute("ROLLBACK TO SAVEPOINT traffic_import_documents")
                self.cursor.execute("RELEASE SAVEPOINT traffic_import_documents")
                self.optimistic = False
            else:
                self.cursor.execute("RELEASE SAVEPOINT traffic_import_documents")
                return ids, np.zeros(len(ids), bool)
        ids = self._existing("traffic_document", "content_hash", batch.document_hashes)
        existed = ids != 0
        fresh = np.flatnonzero(~existed)
        if len(fresh):
            ids[fresh] = self._new_ids("traffic_document", len(fresh))
            self._copy_documents(batch, ids[fresh], fresh)
        self.optimistic = not existed.any()
        return ids, existed

    def _copy_documents(self, batch: _Batch, ids: np.ndarray, numbers: np.ndarray) -> None:
        fields, pairs = batch.documents, zip(ids.tolist(), numbers.tolist())
        # In chunks: the server starts on the first while the next is being put together.
        self._copy("traffic_document", "id, content_hash, external_id, title, body, url, fields, injection_flag, "
                   "injection_reasons", iter(
            lambda: b"".join([_ROW_ID(9, 8, i) + fields[k] for i, k in islice(pairs, COPY_CHUNK)]), b""))
        self.stats["new_documents"] += len(numbers)

    def _items(self, batch: _Batch, query_ids: np.ndarray, document_ids: np.ndarray,
               existed: np.ndarray) -> np.ndarray:
        queries, documents = query_ids[batch.item_query], document_ids[batch.item_document]
        ids = np.zeros(len(batch.item_hashes), np.int64)
        # Only a pair whose document existed before this batch can exist already; it is looked up
        # by (query, document), the unique index items have (their hash has none of its own).
        maybe = np.flatnonzero(existed[batch.item_document])
        if len(maybe):
            ids[maybe] = self._ids(
                f"SELECT string_agg(COALESCE(i.id, 0)::text, ',' ORDER BY u.n) FROM unnest({_ARRAY}::bigint[], "
                f"{_ARRAY}::bigint[]) WITH ORDINALITY AS u(q, d, n) "
                "LEFT JOIN traffic_item i ON i.query_id = u.q AND i.document_id = u.d",
                [",".join(map(str, queries[maybe].tolist())), ",".join(map(str, documents[maybe].tolist()))])
        fresh = np.flatnonzero(ids == 0)
        if len(fresh):
            ids[fresh] = self._new_ids("traffic_item", len(fresh))
            hashes = np.array(batch.item_hashes, dtype="S64")[fresh]
            self._copy("traffic_item", "id, hash, query_id, document_id", [_binary_rows(
                (">i8", ids[fresh]), ("S64", hashes), (">i8", queries[fresh]), (">i8", documents[fresh]))])
            self.stats["new_items"] += len(fresh)
        return ids

    def _entries(self, batch: _Batch, query_ids: np.ndarray, item_ids: np.ndarray) -> None:
        n = len(batch)
        columns: list[tuple[str | None, object]] = [
            (">i8", self.import_id), (">i8", batch.variant_ids), (">i8", query_ids[batch.row_query]),
            (">i8", item_ids[batch.row_item]), (">i4", batch.ranks),
        ]
        if batch.served is None:
            data = _binary_rows(*columns, (None, None))
        else:  # rows with a time and rows without are two runs of rows; their order does not matter
            timed = batch.served != _NULL
            data = _binary_rows(*_where(columns, timed), (">i8", batch.served[timed]))
            if not timed.all():
                data += _binary_rows(*_where(columns, ~timed), (None, None))
        try:
            self._copy("traffic_resultentry", "traffic_import_id, variant_id, query_id, item_id, rank, served_at",
                       [data])
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name != "resultentry_unique_rank":
                raise
            raise _duplicate_rank(batch, query_ids, exc.diag.message_detail or "") from None
        self.stats["entries"] += n


def _where(columns: list[tuple[str | None, object]], mask: np.ndarray) -> list[tuple[str | None, object]]:
    return [(kind, values[mask] if isinstance(values, np.ndarray) else values) for kind, values in columns]


_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_NULL = -(1 << 63)  # a served time no one can give: stands for "none" until it becomes SQL NULL


def _micros(value: datetime | None) -> int:
    """A timestamptz as binary COPY takes it: microseconds since 2000-01-01 UTC."""
    if value is None:
        return _NULL
    delta = value - _PG_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _binary_rows(*fields: tuple[str | None, object]) -> bytes:
    """Rows in binary COPY format, built column-wise by numpy instead of row by row in Python.

    `fields`: (numpy type, values) per column in order; values are an array (one per row) or one
    value for every row; a type of None is NULL in every row. A row is its field count, then each
    field's length (-1 for NULL) and bytes."""
    n = next(len(v) for _, v in fields if isinstance(v, np.ndarray))
    dtype = [("count", ">i2")]
    for k, (kind, _) in enumerate(fields):
        dtype.append((f"len{k}", ">i4"))
        if kind is not None:
            dtype.append((f"f{k}", kind))
    rows = np.empty(n, np.dtype(dtype))
    rows["count"] = len(fields)
    for k, (kind, values) in enumerate(fields):
        rows[f"len{k}"] = -1 if kind is None else np.dtype(kind).itemsize
        if kind is not None:
            rows[f"f{k}"] = values
    return rows.tobytes()


def _duplicate_rank(batch: _Batch, query_ids: np.ndarray, detail: str) -> ImportRowError:
    """The line that repeats a (variant, query, rank): within the batch both lines are named; a
    repeat of an earlier batch's row is known by the key in the constraint's message."""
    rows = list(zip(batch.lines.tolist(), batch.variant_ids.tolist(), query_ids[batch.row_query].tolist(),
                    batch.ranks.tolist(), (batch.query_texts[q] for q in batch.row_query.tolist())))
    # "Key (traffic_import_id, variant_id, query_id, rank)=(7, 1, 42, 3) already exists."
    found = re.search(r"=\(\d+, (\d+), (\d+), (\d+)\)", detail)
    repeated = tuple(map(int, found.groups())) if found else None
    return duplicate_rank_error(rows, repeated_key=repeated) or ImportRowError(
        rows[0][0], f"a rank repeats for the same variant and query ({detail})")


def _set_local(cursor, name: str, value: str) -> str:
    """SET LOCAL that can be undone: returns the value to restore (a savepoint keeps SET LOCAL alive
    until the outer transaction ends, so the importer puts every setting back itself)."""
    cursor.execute("SELECT current_setting(%s), set_config(%s, %s, true)", [name, name, value])
    return cursor.fetchone()[0]


def _skip_row_fk_checks(cursor) -> bool:
    """Turn off PostgreSQL's per-row foreign-key triggers for this transaction, where the role may.

    Django's foreign keys are DEFERRABLE INITIALLY DEFERRED: every inserted entry and item queues
    one trigger per foreign key, run one by one at commit (1.2M checks, ~10 s, for 200k new rows).
    Here every referenced id was read or drawn inside this transaction, so the checks cannot fail;
    what they also do is lock the referenced rows against concurrent deletion, which
    `_Writer._lock_variants` and `_lock_shared_tables` do set-wise instead. Needs a superuser, or
    on PostgreSQL 15+ `GRANT SET ON PARAMETER session_replication_role TO <role>`; otherwise the
    triggers stay on.
    """
    if getattr(settings, "TRAFFIC_IMPORT_SKIP_FK_TRIGGERS", True) is False:
        return False
    granted = " OR has_parameter_privilege('session_replication_role', 'SET')" if connection.pg_version >= 150000 else ""
    cursor.execute(f"SELECT rolsuper{granted} FROM pg_roles WHERE rolname = current_user")
    row = cursor.fetchone()
    if not (row and row[0]):
        return False
    _set_local(cursor, "session_replication_role", "replica")
    return True


def _lock_shared_tables(cursor) -> None:
    """SHARE ROW EXCLUSIVE on the query, document and item tables until commit.

    It blocks DELETE and other imports' INSERTs, so imports into these shared tables take turns,
    while reads, judge runs and human labels (whose foreign-key checks take ROW SHARE) go on. That
    does three jobs: the known rows a file references cannot be deleted under it (with the row
    triggers off, the alternative is a FOR KEY SHARE row lock on every known row, which rewrites
    each of them); what the writer looked up stays true until its COPY, and nothing else draws ids
    from these tables' sequences; and two imports of overlapping content cannot deadlock.
    """
    cursor.execute("LOCK TABLE traffic_query, traffic_document, traffic_item IN SHARE ROW EXCLUSIVE MODE")


def _parses_in_a_process(fmt: str) -> bool:
    # A daemonic process (a Celery prefork worker) may not start processes of its own.
    return fmt == "jsonl" and row_format._fast_loads is not None and not multiprocessing.current_process().daemon


def prepare(fmt: str) -> None:
    """Start the parser processes' fork server now, without waiting for it: its start (an
    interpreter importing this module) then overlaps whatever the caller does first, such as
    hashing the file. Once per process; a no-op when it runs already or the format parses here."""
    if _parses_in_a_process(fmt):
        forkserver.ensure_running()


def _batch_source(fmt: str, raw_lines: Iterable[bytes], parser: RowParser) -> _ProcessParser | _Parser:
    if _parses_in_a_process(fmt):
        return _ProcessParser(raw_lines, parser)
    return _Parser(iter_rows(fmt, raw_lines, parser))


def import_rows(fmt: str, raw_lines: Iterable[bytes], parser: RowParser, *,
                import_id: int) -> tuple[int, dict[str, int]]:
    """Parse the file's lines and write every row's query, document, item and result entry;
    returns (rows, counts). Raises `ImportRowError` for a bad row or a repeated (variant, query, rank)."""
    with connection.cursor() as django_cursor:
        skip_triggers = _skip_row_fk_checks(django_cursor)
        _lock_shared_tables(django_cursor)
        # Lookups are index probes for a batch's worth of hashes: never a scan of a whole table.
        planner = [(name, _set_local(django_cursor, name, "off"))
                   for name in ("enable_seqscan", "enable_hashjoin", "enable_mergejoin")]
        # A plain psycopg cursor on Django's connection (same transaction) binds parameters on the
        # server; Django's own cursor would quote each megabyte of hashes into the SQL text.
        writer = _Writer(psycopg.Cursor(django_cursor.cursor.connection), import_id, lock_variants=skip_triggers)
        source = _batch_source(fmt, raw_lines, parser)
        try:
            for batch in source:
                writer.write(batch)
        finally:
            source.stop()
            writer.cursor.close()
        for name, value in planner:
            _set_local(django_cursor, name, value)
        if skip_triggers:
            _set_local(django_cursor, "session_replication_role", "origin")
    return writer.rows, writer.stats
