"""The floor under a traffic import on this machine: bare INSERT … SELECT of N generated rows into
empty copies of the three tables an all-new file fills, with their real indexes.

    ./run bench .venv/bin/python bench/traffic_insert_floor.py [--rows 200000] [--repeat 3]

No parsing, hashing, joins or duplicate checks: each table gets rows that a `generate_series`
made beforehand inside the server, so what is timed is only the heap and index writes every
imported row must cost. If these three alone take longer than the import's budget, no import code
reaches it with this schema on this machine. Copies (`LIKE … INCLUDING ALL`) keep the real tables
untouched; foreign keys are not copied, as the importer skips their triggers too.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
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
        for _ in range(args.repeat):
            for table, (columns, select) in FILL.items():
                copy = f"floor_{table}"
                cursor.execute(f"DROP TABLE IF EXISTS {copy}")
                cursor.execute(f"CREATE TABLE {copy} (LIKE {table} INCLUDING ALL)")
                # The rows are made first (hashes included) in a temporary table, which writes no WAL.
                cursor.execute("DROP TABLE IF EXISTS floor_source")
                cursor.execute(f"CREATE TEMPORARY TABLE floor_source AS SELECT * FROM ({select}) AS s {columns}",
                               [args.rows])
                cursor.execute("CHECKPOINT")
                started = time.perf_counter()
                cursor.execute(f"INSERT INTO {copy} {columns} SELECT * FROM floor_source")
                times[table].append(time.perf_counter() - started)
                cursor.execute(f"DROP TABLE {copy}")
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
