"""Set-based import for SQLite (the embedded default): stream parsed rows into a temporary staging
table, then move them with a few INSERT … SELECT statements. PostgreSQL imports take
`traffic.pgimport` instead.

Why a staging table: per-row ORM inserts top out at a few thousand rows/s, and bulk_create with
ignore_conflicts cannot return the ids of rows that already existed. The file's line number travels
with each row, so checks that need the whole file (duplicate ranks) still report a line.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

from django.db import connection

from .rows import STAGING_COLUMNS, ImportRowError

TABLE = "traffic_import_staging"
CHUNK = 5_000


def _create(cursor) -> None:
    cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
    cursor.execute(
        f"CREATE TEMPORARY TABLE {TABLE} (line_no integer NOT NULL, variant_id integer NOT NULL, "
        "rank integer NOT NULL, served_at text NULL, query_hash text NOT NULL, query_text text NOT NULL, "
        "segment text NOT NULL, locale text NOT NULL, query_external_id text NOT NULL, doc_hash text NOT NULL, "
        "doc_external_id text NOT NULL, title text NOT NULL, body text NOT NULL, url text NOT NULL, "
        "fields text NOT NULL, item_hash text NOT NULL)"
    )


def stage_rows(rows: Iterable[tuple]) -> int:
    """Load every row into the staging table; returns the row count."""
    count = 0
    with connection.cursor() as cursor:
        _create(cursor)
        placeholders = ", ".join(["%s"] * len(STAGING_COLUMNS))
        sql = f"INSERT INTO {TABLE} VALUES ({placeholders})"
        iterator = iter(rows)
        while chunk := list(islice(iterator, CHUNK)):
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
    check_duplicate_ranks()
    return _move(import_id=import_id)


def _move(*, import_id: int) -> dict[str, int]:
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
