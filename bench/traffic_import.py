"""Benchmark: import a synthetic traffic file into the configured database and report rows/s.

    ./run bench .venv/bin/python bench/traffic_import.py --rows 200000 [--repeat N] [--next-day 0.2 ...] [--phases]

Generates a JSONL file (two variants, 20 results per query, ~300-character passages; every body is
random, so every row is a new document and a new item: the worst case), migrates, then times the
real import service (`traffic.services.traffic_import`) end to end: parse, hash, look up, COPY,
commit. `--repeat` imports the same content again as a new file (every pair known);
`--next-day F` then imports a later day's log of the same queries in which a share F of the rows
serve new documents, as a ramped variant's daily traffic does.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sage.settings")

WORDS = ("spinach blanch minutes water boil vitamin health education bachelor science profile delete game "
         "target shooting approved range passage answer query search result relevance").split()


def write_file(path: Path, rows: int, seed: int = 1, new_fraction: float = 1.0, tag: str = "") -> None:
    """`new_fraction` < 1 with a `tag` writes a later day's log of the same queries: that share of
    the result positions serve documents nobody served before, the rest repeat earlier pairs."""
    rng = random.Random(seed)
    fresh = random.Random(seed + 1)
    depth = 20
    with path.open("w", encoding="utf-8") as fh:
        for n in range(rows):
            q, rank0 = divmod(n // 2, depth)
            variant = "control" if n % 2 == 0 else "treatment"
            shared = rank0 % 2 == 0
            doc = f"q{q}-d{rank0}" if shared else f"q{q}-{variant}-d{rank0}"
            body = " ".join(rng.choice(WORDS) for _ in range(45))
            if tag and fresh.random() < new_fraction:
                doc = f"{tag}-{doc}"
            fh.write(json.dumps({"variant": variant, "query": f"synthetic query {q}", "rank": rank0 + 1,
                                 "doc_id": doc, "title": f"Document {doc}", "url": f"https://example.com/{doc}",
                                 "body": f"{doc} {body}", "segment": ("head", "torso", "tail")[q % 3]}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=1, help="fresh surfaces, one import each")
    parser.add_argument("--phases", action="store_true",
                        help="time the writer's steps, and the CPU of the parser, Python and PostgreSQL")
    parser.add_argument("--parse-only", action="store_true",
                        help="time reading, parsing, validating and hashing the file alone (no database)")
    parser.add_argument("--next-day", type=float, nargs="*", default=[], metavar="NEW",
                        help="after each run, import a next-day file into the same surface in which "
                             "this share of the rows serve new documents (e.g. 0.2)")
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from policy.services import surface_get_or_create
    from traffic.services import traffic_import, variant_get_or_create

    call_command("migrate", verbosity=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "traffic.jsonl"
        write_file(path, args.rows)
        size_mb = path.stat().st_size / 1e6
        print(f"database: {connection.vendor} · file: {args.rows:,} rows, {size_mb:.1f} MB")
        if args.parse_only:
            parse_only(path, args.rows)
            return

        def import_once(surface, source: Path, label: str) -> None:
            with Phases(enabled=args.phases) as phases:
                started = time.perf_counter()
                with source.open("rb") as fh:
                    result = traffic_import(surface=surface, source=fh, filename=f"{label}.jsonl")
                seconds = time.perf_counter() - started
            stats = result.traffic_import.stats
            print(f"{label}: {args.rows:,} rows in {seconds:.2f}s = {args.rows / seconds:,.0f} rows/s "
                  f"({stats['new_items']:,} new items, {stats['new_documents']:,} new documents)")
            phases.report()

        for i in range(args.repeat):
            surface = surface_get_or_create(slug=f"bench-{time.time_ns()}", name="bench")
            for name, role in (("control", "control"), ("treatment", "treatment")):
                variant_get_or_create(surface=surface, name=name, role=role)
            import_once(surface, path, f"run {i + 1}")
            for new in args.next_day:
                day = Path(tmp) / f"next-{i}-{new}.jsonl"
                write_file(day, args.rows, new_fraction=new, tag=f"r{i}-n{new}")
                import_once(surface, day, f"run {i + 1}, next day with {new:.0%} new documents")
                day.unlink()

class Phases:
    """`--phases`: where an import's time goes. The writer's steps (wall time: each includes the
    server's work), when the first batch is written (from the start of the import, file hash
    included) and how long the writer waits for parsed batches after it, the CPU time of the importer's process (JSONL is parsed in a separate process,
    not counted here) and of the PostgreSQL backend, so idle time on either side shows."""

    STEPS = ("_lock_variants", "_queries", "_documents", "_items", "_entries")

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.times: dict[str, float] = {}

    def __enter__(self) -> "Phases":
        if not self.enabled:
            return self
        from django.db import connection

        from traffic import pgimport

        self.saved = [(pgimport._Writer, name, getattr(pgimport._Writer, name)) for name in (*self.STEPS, "write")]
        for cls, name, method in self.saved[:-1]:
            setattr(cls, name, self._timed(name, method))
        pgimport._Writer.write = self._waits(pgimport._Writer.write)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self.backend = cursor.fetchone()[0]
        self.cpu = (time.process_time(), self._backend_cpu())
        return self

    def _timed(self, name: str, method):
        key = name.strip("_")

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.times[key] = self.times.get(key, 0.0) + time.perf_counter() - started
        return timed

    def _waits(self, write):
        """Time before the first batch is written, and between one batch's write and the next:
        the server has nothing to do while the writer waits for the parser."""
        entered, last = time.perf_counter(), [None]

        def timed(*args, **kwargs):
            started = time.perf_counter()
            if last[0] is None:
                self.times["first batch written at"] = started - entered
            else:
                self.times["writer waiting for batches"] = (
                    self.times.get("writer waiting for batches", 0.0) + started - last[0])
            try:
                return write(*args, **kwargs)
            finally:
                last[0] = time.perf_counter()
        return timed

    def _backend_cpu(self) -> float:
        fields = Path(f"/proc/{self.backend}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def __exit__(self, *exc) -> None:
        if not self.enabled:
            return
        for cls, name, method in self.saved:
            setattr(cls, name, method)
        self.times["Python process (CPU)"] = time.process_time() - self.cpu[0]
        self.times["PostgreSQL backend (CPU)"] = self._backend_cpu() - self.cpu[1]

    def report(self) -> None:
        for name, seconds in self.times.items():
            print(f"    {seconds:6.2f}s  {name}")


def parse_only(path: Path, rows: int) -> None:
    """The Python side of an import on its own: what the database's work cannot hide behind."""
    from traffic.rows import HashingReader, RowParser, iter_rows

    times = []
    for _ in range(3):
        started = time.perf_counter()
        with path.open("rb") as fh:
            parser = RowParser(variants={"control": 1, "treatment": 2}, adapt_datetime=lambda value: value)
            count = sum(1 for _ in iter_rows("jsonl", HashingReader(fh), parser))
        times.append(time.perf_counter() - started)
        assert count == rows, count
    best = sorted(times)[1]
    print(f"parse + validate + hash, no database: {best:.2f}s median of 3 = {rows / best:,.0f} rows/s")


if __name__ == "__main__":
    main()
