"""Benchmark: the judgments table partitioned by range of run, against the plain table (PostgreSQL).

    ./run bench .venv/bin/python bench/judgments_partitioned.py                     # 10 runs x 1M
    ./run bench .venv/bin/python bench/judgments_partitioned.py --runs 4 --per-run 200000

README "Scaling out" advises, for 10^7 new judgments a day: partition `judges_judgment` by range of
`run_id` (the unique `(run, item)` that keeps chunk writes idempotent must hold the partition key, and
every read filters by run), one partition per run range, dropped whole for retention. This proves it
on the product's own code at the largest size this machine holds:

1. builds `--runs` runs of `--per-run` judgments each (`calibration_synthetic` for the first, the
   others cloned from it in SQL: same sample, same human labels, new run rows);
2. copies them into `judges_judgment_part`, `PARTITION BY RANGE (run_id)`, one partition per run,
   with the plain table's indexes (the primary key must become `(id, run_id)`);
3. measures, with the plain table and then with the partitioned one renamed into its place (so the
   product's own queries, pages and writer run against each):
   (a) cold agreement of the last run with the humans (`agreement_run_vs_humans`);
   (b) the pages of PAGES (Django test client, server time): the first view with empty caches,
       and warm;
   (c) the product's writer (`sage.bulk.insert_ignoring_conflicts`, COPY) for a new run of
       `--write-rows`, into a partition made for it beforehand, and a redelivered chunk of 50
       (conflicts, through the staging table);
   (d) retention: removing the first run's judgments (DELETE against DROP of its partition,
       each rolled back);
   (e) the plan of a run's status counts: partitions scanned.
Leaves the plain table in place at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Its environment for Django (settings, static files, the test client's host) and its helpers.
from bench.calibration_scale import fmt, setup_postgres, timed  # noqa: E402

TABLE = "judges_judgment"


def columns(cursor) -> list[str]:
    cursor.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
                   [TABLE])
    return [name for (name,) in cursor.fetchall()]


def build(args: argparse.Namespace):
    """The runs: the synthetic set's one, then clones of it (new JudgeRun rows, same sample)."""
    from django.core.management import call_command
    from django.db import connection

    from judges.models import JudgeRun

    call_command("calibration_synthetic", judgments=args.per_run, queries=args.queries, human_fraction=0.2,
                 seed=0, name=args.name, reuse=True, no_progress=True)
    base = JudgeRun.objects.filter(judge_version__judge__name=f"{args.name}-judge").order_by("pk").first()
    runs = list(JudgeRun.objects.filter(judge_version=base.judge_version).order_by("pk"))
    with connection.cursor() as cursor:
        cols = [c for c in columns(cursor) if c not in ("id", "run_id")]
        while len(runs) < args.runs:
            clone = JudgeRun.objects.get(pk=base.pk)
            clone.pk = None
            clone.save()
            started = time.perf_counter()
            cursor.execute(f"INSERT INTO {TABLE} (run_id, {', '.join(cols)}) "
                           f"SELECT %s, {', '.join(cols)} FROM {TABLE} WHERE run_id = %s", [clone.pk, base.pk])
            print(f"  cloned run {base.pk} as run {clone.pk}: {cursor.rowcount:,} rows in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
            runs.append(clone)
        cursor.execute(f"ANALYZE {TABLE}")
    return runs


def plain_indexes(cursor) -> list[tuple[str, str]]:
    cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s ORDER BY indexname", [TABLE])
    return cursor.fetchall()


def make_partitioned(runs) -> dict[str, float]:
    """judges_judgment_part: the same columns, one partition per run, the plain table's indexes with
    the primary key widened to (id, run_id). Returns load and index timings."""
    from django.db import connection

    timings = {}
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE}_part CASCADE")
        cursor.execute(f"CREATE TABLE {TABLE}_part (LIKE {TABLE} INCLUDING DEFAULTS) PARTITION BY RANGE (run_id)")
        # The ids go on from the plain table's identity sequence: a partitioned table numbers rows the
        # same way (a partition's own identity would restart at 1).
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [TABLE])
        (sequence,) = cursor.fetchone()
        cursor.execute(f"ALTER TABLE {TABLE}_part ALTER COLUMN id SET DEFAULT nextval('{sequence}'::regclass)")
        for run in runs:
            cursor.execute(f"CREATE TABLE {TABLE}_p{run.pk} PARTITION OF {TABLE}_part "
                           f"FOR VALUES FROM ({run.pk}) TO ({run.pk + 1})")
        cursor.execute(f"CREATE TABLE {TABLE}_pdefault PARTITION OF {TABLE}_part DEFAULT")
        started = time.perf_counter()
        cursor.execute(f"INSERT INTO {TABLE}_part SELECT * FROM {TABLE}")
        rows = cursor.rowcount
        timings["load rows/s"] = rows / (time.perf_counter() - started)
        started = time.perf_counter()
        for name, definition in plain_indexes(cursor):
            if name.endswith("_pkey"):
                cursor.execute(f"ALTER TABLE {TABLE}_part ADD PRIMARY KEY (id, run_id)")
                continue
            # On a partitioned parent an index is built on every partition; a unique one must hold
            # the partition key, which (run_id, item_id) does.
            cursor.execute(definition.replace(f" ON public.{TABLE} ", f" ON public.{TABLE}_part ")
                           .replace(f"INDEX {name} ", f"INDEX {name}_part "))
        timings["index s"] = time.perf_counter() - started
        cursor.execute(f"ANALYZE {TABLE}_part")
    return timings


def swap() -> None:
    """Exchange the plain and the partitioned table's names (and their id sequences' owner stays)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {TABLE} RENAME TO {TABLE}_swap")
        cursor.execute(f"ALTER TABLE {TABLE}_part RENAME TO {TABLE}")
        cursor.execute(f"ALTER TABLE {TABLE}_swap RENAME TO {TABLE}_part")


# (key, url): the pages a user of a big run opens; {first} and {last} are the first and last run.
PAGES = (
    ("judge page", "/judges/runs/{last}/"),
    ("calibration page", "/calibration/runs/{last}/"),
    ("before/after page", "/calibration/compare/{first}/{last}/"),
    ("cell page", "/calibration/runs/{last}/cell/?a=1&b=2"),
    ("judges index", "/judges/"),
    ("calibration dashboard", "/calibration/"),
)


def measure(args: argparse.Namespace, runs, label: str, new_run_factory) -> dict[str, object]:
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.db import connection, transaction
    from django.test import Client

    from calibration import selectors
    from calibration.models import AgreementSnapshot
    from calibration.services import agreement_snapshots
    from judges.models import Judgment
    from sage.bulk import insert_ignoring_conflicts

    last = runs[-1]
    out: dict[str, object] = {}
    selectors.agreement_run_vs_humans(last)  # once untimed: the process's first call pays its imports
    out["agreement"], result = timed(lambda: selectors.agreement_run_vs_humans(last), args.repeat)
    out["kappa"] = round(result[0].estimates["kappa"], 4)
    client = Client()
    client.force_login(get_user_model().objects.get(username=f"{args.name}-admin"))
    # As a run's end does: its agreement is stored, and its calibration page reads it.
    AgreementSnapshot.objects.filter(run=last).delete()
    agreement_snapshots(run=last)
    cache.clear()  # each table's first views pay their reads (the caches are per process)
    for key, url in PAGES:
        url = url.format(first=runs[0].pk, last=last.pk)
        first_view, response = timed(lambda url=url: client.get(url), 1)
        assert response.status_code == 200, (url, response.status_code)
        out[f"{key} first"] = first_view
        out[key], _ = timed(lambda url=url: client.get(url), args.pages)

    # (c) the product's writer into a run of its own (a partition made for it first, as a run's
    # start would), then a redelivered chunk.
    new_run = new_run_factory()
    with connection.cursor() as cursor:
        if label == "partitioned":
            cursor.execute(f"CREATE TABLE {TABLE}_p{new_run.pk} PARTITION OF {TABLE} "
                           f"FOR VALUES FROM ({new_run.pk}) TO ({new_run.pk + 1})")
    template = list(Judgment.objects.filter(run=last).order_by("item_id")[:args.write_rows])
    rows = []
    for j in template:
        j.pk = None
        j.run = new_run
        rows.append(j)
    started = time.perf_counter()
    with transaction.atomic():
        for i in range(0, len(rows), 10_000):
            insert_ignoring_conflicts(rows[i:i + 10_000])
    out["write rows/s"] = len(rows) / (time.perf_counter() - started)
    redelivered = rows[:50]
    for j in redelivered:
        j.pk = None
    started = time.perf_counter()
    insert_ignoring_conflicts(redelivered)
    out["redelivered chunk"] = [time.perf_counter() - started]
    assert Judgment.objects.filter(run=new_run).count() == len(rows), "a redelivered chunk wrote twice"

    # (d) retention of the first run, rolled back.
    first = runs[0]
    with connection.cursor() as cursor:
        started = time.perf_counter()
        with transaction.atomic():
            if label == "partitioned":
                cursor.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {TABLE}_p{first.pk}")
                cursor.execute(f"DROP TABLE {TABLE}_p{first.pk}")
            else:
                cursor.execute(f"DELETE FROM {TABLE} WHERE run_id = %s", [first.pk])
            out["retention"] = [time.perf_counter() - started]
            transaction.set_rollback(True)
        # (e) what a run's status counts read.
        cursor.execute(f"EXPLAIN SELECT status, count(*) FROM {TABLE} WHERE run_id = %s GROUP BY status", [last.pk])
        plan = [line for (line,) in cursor.fetchall()]
        out["partitions scanned"] = sum(f"{TABLE}_p" in line for line in plan) if label == "partitioned" else "—"
        out["plan"] = plan
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--per-run", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=5_000)
    parser.add_argument("--name", default="part")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--write-rows", type=int, default=100_000)
    args = parser.parse_args()

    load_before = setup_postgres()
    from django.db import connection

    from judges.models import JudgeRun

    started = time.perf_counter()
    runs = build(args)
    total = sum(r.judgments.count() for r in runs)
    print(f"\n{len(runs)} runs, {total:,} judgments, built in {time.perf_counter() - started:.0f} s", flush=True)
    part = make_partitioned(runs)
    print(f"partitioned copy: {part['load rows/s']:,.0f} rows/s loaded, indexes in {part['index s']:.0f} s", flush=True)

    base = runs[0]

    def new_run():
        clone = JudgeRun.objects.get(pk=base.pk)
        clone.pk = None
        clone.save()
        return clone

    results = {}
    results["plain"] = measure(args, runs, "plain", new_run)
    swap()
    try:
        results["partitioned"] = measure(args, runs, "partitioned", new_run)
    finally:
        swap()

    print(f"\n## Judgments partitioned by run: {len(runs)} runs × {args.per_run:,} = {total:,} judgments\n")
    print("| measurement | plain table | partitioned by run |")
    print("|---|---:|---:|")
    p, q = results["plain"], results["partitioned"]
    for key, title in (("agreement", "cold agreement of one run (`agreement_run_vs_humans`)"),
                       *((k, f"{k}: first view / warm (server time)") for k, _ in PAGES),
                       ("redelivered chunk", "a redelivered 50-row chunk (conflicts → staging table)"),
                       ("retention", f"remove one run's {args.per_run:,} judgments (rolled back)")):
        if f"{key} first" in p:
            print(f"| {title} | {fmt(p[f'{key} first'])} / {fmt(p[key])} | {fmt(q[f'{key} first'])} / {fmt(q[key])} |")
        else:
            print(f"| {title} | {fmt(p[key])} | {fmt(q[key])} |")
    print(f"| product writer, {args.write_rows:,} rows of a new run (rows/s) | {p['write rows/s']:,.0f} "
          f"| {q['write rows/s']:,.0f} |")
    print(f"| kappa of that run (same answer) | {p['kappa']} | {q['kappa']} |")
    print(f"| partitions a run's status counts scan | — | {q['partitions scanned']} of {len(runs) + 2} |")
    print("\nplan, partitioned:\n    " + "\n    ".join(q["plan"]))
    load_after = os.getloadavg()
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, PostgreSQL "
          f"{connection.cursor().connection.info.server_version}; load average before "
          f"{tuple(round(x, 2) for x in load_before)}, after {tuple(round(x, 2) for x in load_after)}")


if __name__ == "__main__":
    main()
