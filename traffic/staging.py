"""Set-based import for SQLite (the embedded default): stream parsed rows into a temporary staging
table, then move them with a few INSERT … SELECT statements. PostgreSQL imports take
`traffic.pgimport` instead.

Why a staging table: per-row ORM inserts top out at a few thousand rows/s, and bulk_create with
ignore_conflicts cannot return the ids of rows that already existed. The file's line number travels
with each row, so checks that need the whole file (duplicate ranks) still report a line.

SQLite has one writer at a time, so the two steps hold different locks. Staging writes only the
connection's temporary database, which takes no lock on the shared one: imports parse and stage
side by side while everyone else reads and writes. The move into the real tables is the short
part; imports take turns for it on a lock file beside the database (`writer_turn`), so eight
overlapping uploads queue there instead of racing for SQLite's write lock and failing with
"database is locked" once its busy timeout runs out.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, connection, transaction

from judges.core.injection import detect_document

from .rows import BODY, DOC_HASH, ROW_FIELDS, TITLE, ImportRowError, duplicate_rank_error

TABLE = "traffic_import_staging"
CHUNK = 5_000


def _create(cursor) -> None:
    cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
    columns = ", ".join(f"{name} {sql_type}" for name, sql_type in ROW_FIELDS)
    cursor.execute(f"CREATE TEMPORARY TABLE {TABLE} ({columns})")


def stage_rows(rows: Iterable[tuple]) -> int:
    """Load every row into the staging table; returns the row count. Outside any transaction of the
    caller's, the rows go in a transaction of the temporary database alone (see the docstring)."""
    count = 0
    own_transaction = transaction.get_autocommit()
    with connection.cursor() as cursor:
        _create(cursor)
        placeholders = ", ".join(["%s"] * len(ROW_FIELDS))
        sql = f"INSERT INTO {TABLE} VALUES ({placeholders})"
        iterator = iter(rows)
        if own_transaction:
            cursor.execute("BEGIN DEFERRED")  # one transaction, not one per row; temp tables only
        try:
            while chunk := list(islice(iterator, CHUNK)):
                cursor.executemany(sql, chunk)
                count += len(chunk)
        except BaseException:
            if own_transaction:
                cursor.execute("ROLLBACK")
            cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
            raise
        if own_transaction:
            cursor.execute("COMMIT")
    return count


def detect_injection(rows: Iterable[tuple], flagged: dict[str, str]) -> Iterator[tuple]:
    """Pass `rows` through, putting {document hash: reason codes} of each document whose title or
    body looks addressed to a judge into `flagged` (judges.core.injection). It runs while rows are
    parsed and staged, outside the import's turn; `move_staged(flagged=...)` writes the flags."""
    seen: set[str] = set()
    for row in rows:
        key = row[DOC_HASH]
        if key not in seen:
            if len(seen) >= 200_000:  # a document repeats within a few rows (one per variant), if at all
                seen.clear()
            seen.add(key)
            codes = detect_document(row[TITLE], row[BODY])
            if codes:
                flagged[key] = ",".join(codes)
        yield row


def _lock_path() -> Path:
    name = str(connection.settings_dict["NAME"])
    if name.startswith("file:") or name == ":memory:":  # an in-memory database: one lock per data dir
        return Path(settings.DATA_DIR) / "traffic-import.lock"
    return Path(f"{name}.import-lock")


@contextmanager
def writer_turn(*, wait: float) -> Iterator[None]:
    """Hold this database's import turn (an exclusive `flock`, across threads and processes) for
    the block; raises `TimeoutError` when the turn has not come within `wait` seconds."""
    fd = os.open(_lock_path(), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"no import turn within {wait:g} s") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the file releases the lock


def _duplicate_rank() -> ImportRowError:
    """The line that repeats a (variant, query, rank), once the unique constraint has refused it:
    the staged rows in file order (an error path, so a full read is fine)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT line_no, variant_id, query_hash, rank, query_text FROM {TABLE} ORDER BY line_no")
        found = duplicate_rank_error(iter(cursor.fetchone, None))
    return found or ImportRowError(1, "a rank repeats for the same variant and query")


def move_staged(*, import_id: int, flagged: dict[str, str] | None = None) -> dict[str, int]:
    """Insert the new queries, documents and items and every result entry; returns counts.
    `flagged`: {document hash: injection reason codes} from `detect_injection`, written on the
    documents. Raises `ImportRowError` on the first line that repeats a (variant, query, rank)."""
    try:
        return _move(import_id=import_id, flagged=flagged or {})
    except IntegrityError as exc:
        if "traffic_resultentry" not in str(exc):
            raise
        raise _duplicate_rank() from None


def _move(*, import_id: int, flagged: dict[str, str]) -> dict[str, int]:
    """Plain set-based statements, correctness over speed."""
    # The first row of each query/document/item in the file supplies its attributes.
    first = f"s.line_no IN (SELECT MIN(line_no) FROM {TABLE} GROUP BY %s)"
    stats: dict[str, int] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO traffic_query (text, text_hash, segment, locale, external_id) "
            f"SELECT s.query_text, s.query_hash, s.segment, s.locale, s.query_external_id FROM {TABLE} s "
            f"WHERE {first % 'query_hash'} ON CONFLICT (text_hash) DO NOTHING"
        )
        stats["new_queries"] = max(cursor.rowcount, 0)
        cursor.execute(
            "INSERT INTO traffic_document (content_hash, external_id, title, body, url, fields) "
            f"SELECT s.doc_hash, s.doc_external_id, s.title, s.body, s.url, s.fields FROM {TABLE} s "
            f"WHERE {first % 'doc_hash'} ON CONFLICT (content_hash) DO NOTHING"
        )
        stats["new_documents"] = max(cursor.rowcount, 0)
        if flagged:
            # Rare, so one UPDATE each. A document that existed already gets the same codes again
            # (they are a function of its text), or today's when the detector changed since.
            cursor.executemany("UPDATE traffic_document SET injection_flag = %s, injection_reasons = %s "
                               "WHERE content_hash = %s", [(True, codes, key) for key, codes in flagged.items()])
        cursor.execute(
            "INSERT INTO traffic_item (hash, query_id, document_id) "
            f"SELECT s.item_hash, q.id, d.id FROM {TABLE} s "
            "JOIN traffic_query q ON q.text_hash = s.query_hash "
            "JOIN traffic_document d ON d.content_hash = s.doc_hash "
            f"WHERE {first % 'item_hash'} ON CONFLICT DO NOTHING"
        )
        stats["new_items"] = max(cursor.rowcount, 0)
        cursor.execute(
            "INSERT INTO traffic_resultentry (traffic_import_id, variant_id, query_id, item_id, rank, served_at) "
            f"SELECT %s, s.variant_id, i.query_id, i.id, s.rank, s.served_at FROM {TABLE} s "
            # Items are found by (query, document), their unique index; their hash has no index.
            "JOIN traffic_query q ON q.text_hash = s.query_hash "
            "JOIN traffic_document d ON d.content_hash = s.doc_hash "
            "JOIN traffic_item i ON i.query_id = q.id AND i.document_id = d.id ORDER BY s.line_no",
            [import_id],
        )
        stats["entries"] = max(cursor.rowcount, 0)
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
    return stats
