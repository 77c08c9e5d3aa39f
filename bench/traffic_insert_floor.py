"""The floor under a traffic import on this machine: bare INSERT … SELECT of N generated rows into
empty copies of the three tables an all-new file fills, with their real indexes.

    ./run bench .venv/bin/python bench/traffic_insert_floor.py [--rows 200000] [--repeat 3] [--index-costs]

No parsing, hashing, joins or duplicate checks: each table gets rows that a `generate_series`
made beforehand inside the server, so what is timed is only the heap and index writes every
imported row must cost. If these three alone take longer than the import's budget, no import code
reaches it with this schema on this machine. Copies (`LIKE … INCLUDING ALL`) keep the real tables
untouched; foreign keys are not copied, as the importer skips their triggers too.

`--index-costs`: the same insert with one index added to or taken from a copy, interleaved with the
copy as migrated, so each index's cost per imported row is measured side by side.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sage.settings")

HASH = "encode(sha256(('{salt}-' || g)::bytea), 'hex')"
FILL = {
    # documents: ~300-character body and a jsonb object, as in bench/traffic_import.py
    "traffic_document": ("(content_hash, external_id, title, body, url, fields)",
                         f"SELECT {HASH.format(salt=1)}, 'd' || g, 'Document ' || g, repeat('passage text ', 25) || g, "
                         "'https://example.com/' || g, '{}'::jsonb FROM generate_series(1, %s) g"),
    "traffic_item": ("(hash, query_id, document_id)",
                     f"SELECT {HASH.format(salt=2)}, g / 20, g FROM generate_series(1, %s) g"),
    "traffic_resultentry": ("(traffic_import_id, variant_id, query_id, item_id, rank, served_at)",
                            "SELECT 1, 1 + mod(g, 2), g / 40, g, 1 + mod(g / 2, 20), NULL::timestamptz FROM generate_series(1, %s) g"),
}

# --index-costs: (table, indexes added to its copy, indexes taken from it by their column list)
INDEX_VARIANTS = {
    "traffic_item as migrated": ("traffic_item", [], []),
    "traffic_item + hash index on hash (dropped in 0005)": ("traffic_item", ["USING hash (hash)"], []),
    "traffic_item + index on document_id (dropped in 0005)": ("traffic_item", ["(document_id)"], []),
    "traffic_item + both": ("traffic_item", ["USING hash (hash)", "(document_id)"], []),
    "traffic_resultentry as migrated": ("traffic_resultentry", [], []),
    "traffic_resultentry - (variant_id, rank) index": ("traffic_resultentry", [], ["(variant_id, rank)"]),
}


def time_insert(cursor, table: str, rows: int, add: list[str] = (), drop: list[str] = ()) -> float:
    """Seconds to insert `rows` generated rows into an empty copy of `table` with its indexes,
    plus those in `add` and less those whose definition ends with a column list in `drop`."""
    columns, select = FILL[table]
    copy = f"floor_{table}"
    cursor.execute(f"DROP TABLE IF EXISTS {copy}")
    cursor.execute(f"CREATE TABLE {copy} (LIKE {table} INCLUDING ALL)")
    for using in add:
        cursor.execute(f"CREATE INDEX ON {copy} {using}")
    cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [copy])
    for name, definition in cursor.fetchall():
        if any(definition.endswith(f"btree {cols}") for cols in drop):
            cursor.execute(f"DROP INDEX {name}")
    # The rows are made first (hashes included) in a temporary table, which writes no WAL.
    cursor.execute("DROP TABLE IF EXISTS floor_source")
    cursor.execute(f"CREATE TEMPORARY TABLE floor_source AS SELECT * FROM ({select}) AS s {columns}", [rows])
    cursor.execute("CHECKPOINT")
    started = time.perf_counter()
    cursor.execute(f"INSERT INTO {copy} {columns} SELECT * FROM floor_source")
    seconds = time.perf_counter() - started
    cursor.execute(f"DROP TABLE {copy}")
    return seconds


def index_costs(cursor, rows: int, repeat: int) -> None:
    times: dict[str, list[float]] = {name: [] for name in INDEX_VARIANTS}
    for _ in range(repeat):
        for name, (table, add, drop) in INDEX_VARIANTS.items():
            times[name].append(time_insert(cursor, table, rows, add, drop))
        print("  " + ", ".join(f"{v[-1]:.2f}s" for v in times.values()))
    print("\n| copy | median s | runs |\n|---|---:|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.2f} | {' / '.join(f'{v:.2f}' for v in values)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--index-costs", action="store_true",
                        help="time each table with one index more or less, interleaved with the table as migrated")
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor != "postgresql":
        raise SystemExit("PostgreSQL only: run it through ./run bench")
    call_command("migrate", verbosity=0)
    times: dict[str, list[float]] = {table: [] for table in FILL}
    with connection.cursor() as cursor:
        cursor.execute("SHOW shared_buffers")
        print(f"rows per table: {args.rows:,}; shared_buffers {cursor.fetchone()[0]}; load "
              + "/".join(f"{x:.2f}" for x in os.getloadavg()))
        if args.index_costs:
            index_costs(cursor, args.rows, args.repeat)
            return
        for _ in range(args.repeat):
            for table in FILL:
                times[table].append(time_insert(cursor, table, args.rows))
            print("  " + ", ".join(f"{t}: {v[-1]:.2f}s" for t, v in times.items()))
    print("\n| table | indexes | median s | rows/s |\n|---|---:|---:|---:|")
    total = 0.0
    for table in FILL:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM pg_indexes WHERE tablename = %s", [table])
            n_indexes = cursor.fetchone()[0]
        median = statistics.median(times[table])
        total += median
        print(f"| {table} | {n_indexes} | {median:.2f} | {args.rows / median:,.0f} |")
    print(f"| **all three** | | **{total:.2f}** | **{args.rows / total:,.0f}** |")


if __name__ == "__main__":
    main()
