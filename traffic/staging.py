"""Set-based import: stream parsed rows into a temporary staging table, then move them with a few
INSERT … SELECT statements.

Why a staging table: per-row ORM inserts top out at a few thousand rows/s, and bulk_create with
ignore_conflicts cannot return the ids of rows that already existed. PostgreSQL gets the rows by
COPY (psycopg 3 `cursor.copy`); the embedded SQLite gets them by executemany. The file's line
number travels with each row, so checks that need the whole file (duplicate ranks) still report a line.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

from django.conf import settings
from django.db import IntegrityError, connection, transaction

from .rows import STAGING_COLUMNS, ImportRowError

TABLE = "traffic_import_staging"
SQLITE_CHUNK = 5_000


def _create(cursor) -> None:
    pg = connection.vendor == "postgresql"
    bigint, ts = ("bigint", "timestamptz") if pg else ("integer", "text")
    # Hex digests compare bytewise under "C" (memcmp); the default C.UTF-8 collation goes through strcoll.
    h = 'text COLLATE "C"' if pg else "text"
    cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
    cursor.execute(
        f"CREATE TEMPORARY TABLE {TABLE} (line_no {bigint} NOT NULL, variant_id {bigint} NOT NULL, "
        f"rank integer NOT NULL, served_at {ts} NULL, query_hash {h} NOT NULL, query_text text NOT NULL, "
        f"segment text NOT NULL, locale text NOT NULL, query_external_id text NOT NULL, doc_hash {h} NOT NULL, "
        "doc_external_id text NOT NULL, title text NOT NULL, body text NOT NULL, url text NOT NULL, "
        f"fields text NOT NULL, item_hash {h} NOT NULL)"
        + (" ON COMMIT DROP" if pg else "")
    )


def stage_rows(rows: Iterable[tuple]) -> int:
    """Load every row into the staging table; returns the row count."""
    count = 0
    with connection.cursor() as cursor:
        _create(cursor)
        if connection.vendor == "postgresql":
            columns = ", ".join(STAGING_COLUMNS)
            with cursor.cursor.copy(f"COPY {TABLE} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
                    count += 1
        else:
            placeholders = ", ".join(["%s"] * len(STAGING_COLUMNS))
            sql = f"INSERT INTO {TABLE} VALUES ({placeholders})"
            iterator = iter(rows)
            while chunk := list(islice(iterator, SQLITE_CHUNK)):
                cursor.executemany(sql, chunk)
                count += len(chunk)
    return count


def check_duplicate_ranks() -> None:
    """The first line that repeats a (variant, query, rank) seen earlier in the same file."""
    with connection.cursor() as cursor:
        # One hash aggregate tells whether there is any duplicate at all; only then find its line.
        cursor.execute(f"SELECT 1 FROM {TABLE} GROUP BY variant_id, query_hash, rank HAVING COUNT(*) > 1 LIMIT 1")
        if cursor.fetchone() is None:
            return
        cursor.execute(f"CREATE INDEX {TABLE}_rank ON {TABLE} (variant_id, query_hash, rank, line_no)")
        # Autovacuum never analyzes temporary tables; without statistics the planner assumes a tiny
        # table and picks nested loops for the joins below.
        cursor.execute(f"ANALYZE {TABLE}")
        cursor.execute(
            f"SELECT s.line_no, s.rank, s.query_text, "
            f"(SELECT MIN(t.line_no) FROM {TABLE} t WHERE t.variant_id = s.variant_id "
            f" AND t.query_hash = s.query_hash AND t.rank = s.rank) "
            f"FROM {TABLE} s WHERE EXISTS (SELECT 1 FROM {TABLE} t WHERE t.variant_id = s.variant_id "
            f"AND t.query_hash = s.query_hash AND t.rank = s.rank AND t.line_no < s.line_no) "
            f"ORDER BY s.line_no LIMIT 1"
        )
        dup = cursor.fetchone()
    if dup is not None:
        line, rank, query, first = dup
        raise ImportRowError(line, f"duplicate rank {rank} for this variant and query {query[:60]!r} "
                                   f"(first given on line {first})")


def move_staged(*, import_id: int) -> dict[str, int]:
    """Insert the new queries, documents and items and every result entry; returns counts.
    Raises `ImportRowError` on the first line that repeats a (variant, query, rank)."""
    if connection.vendor == "postgresql":
        return _move_postgresql(import_id=import_id)
    check_duplicate_ranks()
    return _move_generic(import_id=import_id)


def _set_local(cursor, name: str, value: str) -> str:
    """SET LOCAL that can be undone: returns the value to restore (a savepoint keeps SET LOCAL alive
    until the outer transaction ends, so the importer puts every setting back itself)."""
    cursor.execute("SELECT current_setting(%s), set_config(%s, %s, true)", [name, name, value])
    return cursor.fetchone()[0]


def _skip_row_fk_checks(cursor) -> bool:
    """Turn off PostgreSQL's per-row foreign-key triggers for this transaction, where the role may.

    Django's foreign keys are DEFERRABLE INITIALLY DEFERRED: every inserted entry and item queues
    one trigger per foreign key, run one by one at commit (1.2M checks, ~10 s, for 200k new rows).
    Here every referenced id comes from a join against its table inside this transaction, so the
    checks cannot fail; what they also do is lock the referenced rows against concurrent deletion,
    which `_lock_variants` and `_lock_shared_tables` do set-wise instead. Needs a superuser, or on
    PostgreSQL 15+ `GRANT SET ON PARAMETER session_replication_role TO <role>`; otherwise the
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


def _lock_variants(cursor) -> None:
    """FOR KEY SHARE on the variants the file names — what their foreign-key checks would lock — so
    that none can be deleted before this import commits."""
    cursor.execute(
        f"SELECT COUNT(*) FROM (SELECT 1 FROM traffic_variant WHERE id IN (SELECT DISTINCT variant_id "
        f"FROM {TABLE}) FOR KEY SHARE) v"
    )
    locked = cursor.fetchone()[0]
    cursor.execute(f"SELECT COUNT(DISTINCT variant_id) FROM {TABLE}")
    if locked != cursor.fetchone()[0]:
        raise ImportRowError(1, "a variant named in the file was deleted while it was being imported")


def _lock_shared_tables(cursor) -> None:
    """SHARE ROW EXCLUSIVE on the query, document and item tables until commit.

    It blocks DELETE and other imports' INSERTs, so imports into these shared tables take turns,
    while reads, judge runs and human labels (whose foreign-key checks take ROW SHARE) go on. That
    does three jobs: the known rows a file references cannot be deleted under it (with the row
    triggers off, the alternative was a FOR KEY SHARE row lock on every known row, which for a file
    of known content rewrote 200k tuples: most of a re-import's time); the `NOT EXISTS` filters below
    see every committed row; and two imports of overlapping content cannot deadlock in each other's
    ON CONFLICT waits.
    """
    cursor.execute("LOCK TABLE traffic_query, traffic_document, traffic_item IN SHARE ROW EXCLUSIVE MODE")


def _move_postgresql(*, import_id: int) -> dict[str, int]:
    stats: dict[str, int] = {}
    with connection.cursor() as cursor:
        # Sorts and hash joins over the whole file stay in memory.
        work_mem = _set_local(cursor, "work_mem", "256MB")
        fast = _skip_row_fk_checks(cursor)
        if fast:
            _lock_variants(cursor)
        _lock_shared_tables(cursor)
        # The first row of each query in the file supplies its attributes (segment, locale, id).
        cursor.execute(
            "INSERT INTO traffic_query (text, text_hash, segment, locale, external_id) "
            f"SELECT s.query_text, s.query_hash, s.segment, s.locale, s.query_external_id FROM {TABLE} s "
            f"WHERE s.line_no IN (SELECT MIN(line_no) FROM {TABLE} GROUP BY query_hash) "
            "ON CONFLICT (text_hash) DO NOTHING"
        )
        stats["new_queries"] = max(cursor.rowcount, 0)
        # No DISTINCT: ON CONFLICT DO NOTHING also skips a repeat within the statement, and a scan of a
        # temporary table (never a synchronized scan) reads it in line order, so the first row wins.
        cursor.execute(
            "INSERT INTO traffic_document (content_hash, external_id, title, body, url, fields) "
            f"SELECT s.doc_hash, s.doc_external_id, s.title, s.body, s.url, s.fields::jsonb FROM {TABLE} s "
            # Known documents are skipped before their fields are cast to jsonb, not by the conflict.
            "WHERE NOT EXISTS (SELECT 1 FROM traffic_document d WHERE d.content_hash = s.doc_hash) "
            "ON CONFLICT (content_hash) DO NOTHING"
        )
        stats["new_documents"] = max(cursor.rowcount, 0)
        cursor.execute(
            "INSERT INTO traffic_item (hash, query_id, document_id) "
            f"SELECT s.item_hash, q.id, d.id FROM {TABLE} s "
            "JOIN traffic_query q ON q.text_hash = s.query_hash "
            "JOIN traffic_document d ON d.content_hash = s.doc_hash "
            "WHERE NOT EXISTS (SELECT 1 FROM traffic_item i WHERE i.hash = s.item_hash) ON CONFLICT DO NOTHING"
        )
        stats["new_items"] = max(cursor.rowcount, 0)
        # A repeated (variant, query, rank) trips resultentry_unique_rank; only then is the file's
        # line looked for, so a good file pays for no duplicate check of its own.
        try:
            with transaction.atomic():
                cursor.execute(
                    "INSERT INTO traffic_resultentry (traffic_import_id, variant_id, query_id, item_id, rank, "
                    f"served_at) SELECT %s, s.variant_id, i.query_id, i.id, s.rank, s.served_at FROM {TABLE} s "
                    "JOIN traffic_item i ON i.hash = s.item_hash",
                    [import_id],
                )
        except IntegrityError as exc:
            if getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None) != "resultentry_unique_rank":
                raise
            check_duplicate_ranks()
            raise
        stats["entries"] = max(cursor.rowcount, 0)
        if fast:
            _set_local(cursor, "session_replication_role", "origin")
        _set_local(cursor, "work_mem", work_mem)
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
    return stats


def _move_generic(*, import_id: int) -> dict[str, int]:
    """SQLite (the embedded default): plain set-based statements, correctness over speed."""
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
            "JOIN traffic_item i ON i.hash = s.item_hash ORDER BY s.line_no",
            [import_id],
        )
        stats["entries"] = max(cursor.rowcount, 0)
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
    return stats
