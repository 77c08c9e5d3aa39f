"""Benchmark: judge-vs-human agreement and the calibration run page at 1M judgments (PostgreSQL).

    ./run bench .venv/bin/python bench/calibration_scale.py            # fresh cluster
    DATABASE_URL=postgres://… .venv/bin/python bench/calibration_scale.py        # reuse a loaded one

Migrates, builds the synthetic set with `manage.py calibration_synthetic` (or reuses it: same
--name), then measures
  (a) cold agreement of the run with the humans (`agreement_run_vs_humans`, 1,000 bootstrap
      resamples; no snapshot involved), median of --repeat, split into the SQL and the numpy part;
  (b) the baseline: the same call through the portable ORM + numpy path (what every database
      used before the PostgreSQL path existed), --baseline-repeat times (0 skips it);
  (c) the run page `/calibration/runs/<id>/` through Django's test client with warm agreement
      snapshots: server time = the in-process request (view, queries, template), median of --pages;
      plus `agreement_snapshots(run=run)` alone, warm;
  (d) with --comparison-queries N: a comparison (control vs treatment, N queries × top-10, an imported
      judge's labels) built through the services inside the same database, then its detail page and a
      query page warm, median of --pages (the judgments table holds the big run's rows too);
  (e) with --write-rows N: bulk judgment writes into the big table through the product's path
      (`sage.bulk.insert_ignoring_conflicts`, COPY into a staging table and one INSERT … ON CONFLICT
      DO NOTHING) as a judge chunk flushes (FLUSH_EVERY rows per call, autocommit) and as the label
      import writes (10,000 per call, one transaction), beside the `bulk_create(ignore_conflicts)`
      they replaced; the import path without the table's secondary indexes and with a BRIN index on
      created_at added (both rolled back): rows/s, median of --write-repeat;
  (f) sizes: the judgments table, each of its indexes, the database.
Prints markdown tables and the load average before and after (the machine may be shared).

10M judgments (issue 15, BENCHMARKS.md "Scale: 10M judgments"):

    DATABASE_URL=postgres://… .venv/bin/python bench/calibration_scale.py --judgments 10000000 \
        --queries 50000 --name s10m --baseline-repeat 0 --comparison-queries 2000 --write-rows 100000
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from contextlib import nullcontext
from decimal import Decimal
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sage.settings")
os.environ.setdefault("SAGE_MANIFEST_STATIC", "false")  # no collectstatic needed for the page
os.environ["ALLOWED_HOSTS"] = os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost") + ",testserver"


def timed(fn, repeat: int) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def fmt(times: list[float]) -> str:
    if not times:
        return "—"
    med = statistics.median(times)
    return f"{med * 1000:,.0f} ms" if med < 10 else f"{med:,.1f} s"


def setup_postgres() -> tuple[float, float, float]:
    """Django set up and migrated on PostgreSQL (exits otherwise); the load average before it."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor != "postgresql":
        sys.exit("needs PostgreSQL: run under ./run bench or set DATABASE_URL=postgres://…")
    load_before = os.getloadavg()
    call_command("migrate", verbosity=0)
    return load_before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--judgments", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=5_000)
    parser.add_argument("--humans-per-item", type=int, default=1)
    parser.add_argument("--human-fraction", type=float, default=0.2)
    parser.add_argument("--name", default="synthetic")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline-repeat", type=int, default=1)
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--comparison-queries", type=int, default=0, help="(d): queries of the comparison; 0 skips")
    parser.add_argument("--write-rows", type=int, default=0, help="(e): judgments per write measurement; 0 skips")
    parser.add_argument("--write-repeat", type=int, default=3)
    parser.add_argument("--skip-agreement", action="store_true", help="skip (a)-(c) (e.g. to rerun (d)-(f))")
    args = parser.parse_args()

    load_before = setup_postgres()
    from django.core.management import call_command
    from django.db import connection

    started = time.perf_counter()
    call_command("calibration_synthetic", judgments=args.judgments, queries=args.queries,
                 humans_per_item=args.humans_per_item, human_fraction=args.human_fraction, seed=0,
                 name=args.name, reuse=True)
    build_s = time.perf_counter() - started

    from judges.models import JudgeRun

    run = JudgeRun.objects.select_related("judge_version__policy_version").get(
        judge_version__judge__name=f"{args.name}-judge")
    n_judgments = run.judgments.count()
    print(f"\nset built or reused in {build_s:.1f} s: run {run.pk}, {n_judgments:,} judgments")
    if not args.skip_agreement:
        agreement_and_page(args, run, n_judgments)
    if args.comparison_queries:
        comparison_pages(args, run)
    if args.write_rows:
        write_rates(args, run)
    sizes()
    load_after = os.getloadavg()
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, PostgreSQL {connection.cursor().connection.info.server_version}; "
          f"load average before {tuple(round(x, 2) for x in load_before)}, after {tuple(round(x, 2) for x in load_after)}")


def agreement_and_page(args: argparse.Namespace, run, n_judgments: int) -> None:
    """(a)-(c): cold agreement, its baseline, the run page with warm snapshots."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from calibration import selectors
    from calibration.models import AgreementSnapshot
    from calibration.services import agreement_snapshots
    from review.models import HumanLabel

    n_humans = HumanLabel.objects.filter(is_latest=True, item__judgments__run=run).count()
    # (a) cold agreement, fast path: SQL part and numpy part, then the whole call.
    sql_t, counts = timed(lambda: selectors.run_vs_humans_counts(run, "relevance"), args.repeat)
    numpy_t, _ = timed(lambda: selectors.agreement_from_counts(dimension="relevance", counts=counts,
                                                               values=[0, 1, 2, 3]), args.repeat)
    fast_t, fast = timed(lambda: selectors.agreement_run_vs_humans(run), args.repeat)
    # (b) baseline: the portable ORM path.
    base_t, base = [], None
    if args.baseline_repeat:
        with mock.patch.object(selectors, "use_sql_path", return_value=False):
            base_t, base = timed(lambda: selectors.agreement_run_vs_humans(run), args.baseline_repeat)
        assert [r.as_dict() for r in base] == [r.as_dict() for r in fast], "the two paths disagree"
    loader_t, _ = timed(lambda: selectors.run_labels(run, "relevance"), args.repeat)
    loader_base_t: list[float] = []
    if args.baseline_repeat:
        with mock.patch.object(selectors, "use_sql_path", return_value=False):
            loader_base_t, _ = timed(lambda: selectors.run_labels(run, "relevance"), 1)

    # (c) the page with warm snapshots.
    AgreementSnapshot.objects.filter(run=run).delete()
    cold_snap_t, _ = timed(lambda: agreement_snapshots(run=run), 1)
    warm_snap_t, _ = timed(lambda: agreement_snapshots(run=run), max(args.pages, 3))
    client = Client()
    client.force_login(get_user_model().objects.get(username=f"{args.name}-admin"))
    url = f"/calibration/runs/{run.pk}/"
    first = client.get(url)
    page_t: list[float] = []
    status = first.status_code
    if status == 200:
        page_t, _ = timed(lambda: client.get(url), args.pages)

    r = fast[0]
    print(f"\n## Calibration at scale — run {run.pk}: {n_judgments:,} judgments, {n_humans:,} latest human labels "
          f"on its items, {r.n:,} paired items over {r.n_queries:,} queries\n")
    print(f"kappa {r.estimates['kappa']:.4f} [{r.ci['kappa'][0]:.4f}, {r.ci['kappa'][1]:.4f}], "
          f"quadratic {r.estimates['kappa_quadratic']:.4f}, alpha {r.estimates['alpha']:.4f}\n")
    print("| measurement | median | runs |")
    print("|---|---:|---:|")
    rows = [
        ("cold agreement, PostgreSQL path (`agreement_run_vs_humans`, 1,000 resamples)", fast_t),
        ("  of which SQL: per-query confusion counts (`run_vs_humans_counts`)", sql_t),
        ("  of which numpy/sklearn/krippendorff + bootstrap (`agreement_from_counts`)", numpy_t),
        ("cold agreement, baseline ORM path (before)", base_t),
        (f"`run_labels` {n_judgments:,} judgments, one bytea per column → numpy", loader_t),
        (f"`run_labels` {n_judgments:,} judgments, ORM (before)", loader_base_t),
        ("`agreement_snapshots` cold (computes and stores)", cold_snap_t),
        ("`agreement_snapshots` warm", warm_snap_t),
        (f"run page `{url}` server time, warm snapshots (HTTP {status})", page_t),
    ]
    print_rows(rows)


def print_rows(rows: list[tuple[str, list[float]]]) -> None:
    for label, times in rows:
        print(f"| {label} | {fmt(times)} | {len(times)} |")
    print("\nall runs (s): " + "; ".join(f"{label.strip()[:40]}: {[round(t, 3) for t in times]}"
                                        for label, times in rows))


def comparison_pages(args: argparse.Namespace, big_run) -> None:
    """(d): a comparison built through the services next to the big run, then its pages, warm."""
    import io
    import json as jsonlib

    from django.contrib.auth import get_user_model
    from django.test import Client

    from comparisons.models import Comparison
    from comparisons.services import QuerySpec, comparison_create, comparison_refresh
    from judges.models import Judgment
    from judges.services import judge_create, judge_run_import
    from policy.rubric import trec_relevance_dimension
    from policy.services import policy_create, policy_version_publish, surface_get_or_create
    from traffic.services import traffic_import, variant_get_or_create

    n, k = args.comparison_queries, 10
    admin = get_user_model().objects.get(username=f"{args.name}-admin")
    slug = f"{args.name}-cmp-{n}"[:50]
    comparison = Comparison.objects.filter(surface__slug=slug).order_by("pk").first()
    started = time.perf_counter()
    if comparison is None:
        surface = surface_get_or_create(slug=slug, name=f"Comparison bench {n}")
        control = variant_get_or_create(surface=surface, name="control", role="control")
        treatment = variant_get_or_create(surface=surface, name="treatment", role="treatment")

        def rows(variant: str) -> bytes:
            # The treatment keeps 7 of the control's top 10 (moved) and brings 3 documents of its own.
            out = []
            for q in range(n):
                docs = [f"q{q}-d{r}" for r in range(1, k + 1)]
                if variant == "treatment":
                    docs = docs[3:] + [f"q{q}-t{r}" for r in range(3)]
                    docs = docs[1::2] + docs[0::2]
                for rank, doc in enumerate(docs, 1):
                    out.append(jsonlib.dumps({"variant": variant, "query": f"compare query {q}", "query_id": f"cq{q}",
                                              "rank": rank, "doc_id": doc, "title": f"Doc {doc}",
                                              "body": f"Passage {doc} for compare query {q}."}).encode() + b"\n")
            return b"".join(out)

        traffic_import(surface=surface, source=io.BytesIO(rows("control")), filename="control.jsonl", user=admin)
        traffic_import(surface=surface, source=io.BytesIO(rows("treatment")), filename="treatment.jsonl", user=admin)
        draft = policy_create(surface=surface, slug="rel-cmp", name="Comparison relevance", text="# Relevance\n",
                              rubric={"dimensions": [trec_relevance_dimension()]}, user=admin)
        version = policy_version_publish(draft=draft, user=admin, change_note="bench",
                                         expected_lock_version=draft.lock_version)
        judge = judge_create(name=f"{slug}-judge", surface=surface, user=admin, backend="imported",
                             model_name="synthetic", policy_version=version, precedent_k=0)
        with mock.patch("comparisons.services._queue_refresh"):  # computed below, in this process
            comparison = comparison_create(surface=surface, control=control, treatment=treatment, judge_version=judge,
                                           k=k, query_sample=QuerySpec(), name=f"bench {n}", user=admin)
        items = comparison.sample.sample_items.select_related("item__query", "item__document")
        label_rows = [(i, {"query_id": si.item.query.external_id, "doc_id": si.item.document.external_id,
                           "labels": {"relevance": (si.item_id * 7) % 4},
                           "rationale": "synthetic rationale " * 5})
                      for i, si in enumerate(items, 1)]
        report = judge_run_import(version=judge, sample=comparison.sample, stream=None, user=admin, rows=label_rows)
        assert not report.errors, report.errors[:3]
        comparison = comparison_refresh(comparison_id=comparison.pk)
    build_s = time.perf_counter() - started
    judged = Judgment.objects.filter(judge_version_id=comparison.judge_version_id).count()
    query_id = comparison.results["per_query"][0]["query_id"]
    client = Client()
    client.force_login(admin)
    rows_out = []
    for label, url in ((f"comparison page `/comparisons/{comparison.pk}/`", f"/comparisons/{comparison.pk}/"),
                       ("query page `/comparisons/<id>/queries/<q>/`",
                        f"/comparisons/{comparison.pk}/queries/{query_id}/")):
        first = time.perf_counter()
        status = client.get(url).status_code  # the first view: caches and the template load
        rows_out.append((f"{label} first view (this process's caches empty)", [time.perf_counter() - first]))
        times = timed(lambda: client.get(url), args.pages)[0] if status == 200 else []
        rows_out.append((f"{label} warm (HTTP {status})", times))
    print(f"\n## Comparison pages next to {big_run.total_items:,} judgments — comparison {comparison.pk} "
          f"({comparison.status}): {n:,} queries × top-{k}, {comparison.sample.item_count:,} items judged "
          f"({judged:,} judgments of its judge); built or reused in {build_s:.1f} s\n")
    print("| measurement | median | runs |")
    print("|---|---:|---:|")
    print_rows(rows_out)


def write_rates(args: argparse.Namespace, big_run) -> None:
    """(e): bulk judgment writes into the big table, product path and variants."""
    from django.db import connection, transaction

    from judges.models import Judgment, JudgeRun
    from judges.services import FLUSH_EVERY, _cache_key
    from sage.bulk import insert_ignoring_conflicts
    from traffic.models import Item

    jv = big_run.judge_version
    pv = jv.policy_version
    n = args.write_rows
    items = list(Item.objects.filter(sample_items__sample_id=big_run.sample_id).order_by("sample_items__position")
                 .values_list("id", "hash")[:n])
    prompt = "You are a relevance judge. Policy text … " + "x" * 1200  # a realistic prompt's size (~1.3 kB)

    def judgments(run: JudgeRun) -> list[Judgment]:
        return [Judgment(run=run, item_id=item_id, status=Judgment.Status.OK, labels={"relevance": item_id % 4},
                         rationale="The passage answers the query directly. " * 3, error_kind="", error_message="",
                         prompt=prompt, raw_response='{"labels": {"relevance": 2}, "rationale": "…"}',
                         tokens_in=420, tokens_out=40, cost=Decimal("0.000123"), latency_ms=812.0, attempts=1,
                         repaired=False, judge_version=jv, policy_version_id=pv.pk, rubric_hash=pv.rubric_hash,
                         precedent_ids=[], item_hash=item_hash, cache_key=_cache_key(jv, None, item_hash),
                         model_hash="") for item_id, item_hash in items]

    def new_run() -> JudgeRun:
        return JudgeRun.objects.create(judge_version=jv, sample_id=big_run.sample_id, status=JudgeRun.Status.RUNNING,
                                       total_items=n, message="write-rate bench")

    def secondary_indexes() -> list[str]:
        with connection.cursor() as cur:
            cur.execute("""SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                           JOIN pg_class t ON t.oid = x.indrelid WHERE t.relname = 'judges_judgment'
                           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)""")
            return [r[0] for r in cur.fetchall()]

    class Rollback(Exception):
        pass

    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = Path(f"/proc/{cur.fetchone()[0]}/stat")

    def backend_cpu() -> float:
        # This connection's server process, when the cluster runs on this machine (else 0): with the
        # client's own CPU time it gives a rate that a loaded, shared machine does not distort much.
        try:
            fields = backend.read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return 0.0

    def bulk_create(rows: list[Judgment]) -> None:
        Judgment.objects.bulk_create(rows, ignore_conflicts=True)

    def measure(batch: int, *, one_transaction: bool, ddl: list[str] | None = None,
                write=insert_ignoring_conflicts) -> tuple[float, float]:
        """(rows/s of wall time, rows per CPU second of client + server process)."""
        run = new_run()
        rows = judgments(run)
        elapsed = cpu = 0.0
        try:
            with transaction.atomic() if one_transaction else nullcontext():
                with connection.cursor() as cur:
                    for statement in ddl or []:
                        cur.execute(statement)
                for start in range(0, len(rows), batch):
                    t, c = time.perf_counter(), time.process_time() + backend_cpu()
                    write(rows[start:start + batch])
                    elapsed += time.perf_counter() - t
                    cpu += time.process_time() + backend_cpu() - c
                if ddl is not None:
                    raise Rollback  # put the indexes back as they were
        except Rollback:
            pass
        Judgment.objects.filter(run=run).delete()
        run.delete()
        return len(rows) / elapsed, len(rows) / cpu if cpu else float("nan")

    dropped = secondary_indexes()
    cases = [
        (f"before: `bulk_create(ignore_conflicts=True)`, batches of FLUSH_EVERY={FLUSH_EVERY}, autocommit "
         "(a judge chunk's flush until 2026-12-07)", dict(batch=FLUSH_EVERY, one_transaction=False, write=bulk_create)),
        (f"product path: `insert_ignoring_conflicts` (COPY → staging → INSERT … ON CONFLICT DO NOTHING), batches "
         f"of FLUSH_EVERY={FLUSH_EVERY}, autocommit (a judge chunk's flush)", dict(batch=FLUSH_EVERY, one_transaction=False)),
        ("before: `bulk_create`, batches of 1,000 in one transaction (the label import until 2026-12-07)",
         dict(batch=1000, one_transaction=True, write=bulk_create)),
        ("product path: `insert_ignoring_conflicts`, batches of 1,000, autocommit",
         dict(batch=1000, one_transaction=False)),
        ("product path: `insert_ignoring_conflicts`, 10,000 per call in one transaction (the label import)",
         dict(batch=10_000, one_transaction=True)),
        (f"same, without the {len(dropped)} secondary indexes ({', '.join(dropped)}; rolled back)",
         dict(batch=10_000, one_transaction=True, ddl=[f'DROP INDEX "{name}"' for name in dropped])),
        ("same, all indexes + BRIN on created_at (rolled back)",
         dict(batch=10_000, one_transaction=True, ddl=["CREATE INDEX judgment_created_brin ON judges_judgment "
                                                       "USING brin (created_at)"])),
    ]
    print(f"\n## Bulk judgment writes into the {big_run.total_items:,}-judgment table — {len(items):,} rows per "
          f"measurement, median of {args.write_repeat}\n")
    print("rows/s = rows / wall time of the write calls; rows per CPU s = rows / (this process's CPU + its "
          "PostgreSQL backend's CPU) over the same calls: about what one idle core pair would do, since the two "
          "take turns.\n")
    print("| write path | rows/s (median) | rows per CPU s (median) | runs (rows/s) |")
    print("|---|---:|---:|---|")
    for label, kw in cases:
        rates = [measure(**kw) for _ in range(args.write_repeat)]
        wall, cpu = [r[0] for r in rates], [r[1] for r in rates]
        print(f"| {label} | {statistics.median(wall):,.0f} | {statistics.median(cpu):,.0f} | "
              f"{', '.join(f'{r:,.0f}' for r in wall)} |", flush=True)


def sizes() -> None:
    """(f): the judgments table and its indexes, and the whole database."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM judges_judgment")
        rows = cur.fetchone()[0]
        cur.execute("""SELECT pg_relation_size('judges_judgment'), pg_total_relation_size('judges_judgment'),
                              pg_database_size(current_database())""")
        heap, total, database = cur.fetchone()
        cur.execute("""SELECT i.relname, pg_relation_size(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                       JOIN pg_class t ON t.oid = x.indrelid WHERE t.relname = 'judges_judgment' ORDER BY 2 DESC""")
        indexes = cur.fetchall()
    gb = 1024 ** 3
    print(f"\n## Sizes — judges_judgment: {rows:,} rows, heap {heap / gb:.2f} GiB ({heap / max(rows, 1):.0f} B/row), "
          f"with indexes and TOAST {total / gb:.2f} GiB; database {database / gb:.2f} GiB\n")
    print("| index | size | bytes/row |")
    print("|---|---:|---:|")
    for name, size in indexes:
        print(f"| {name} | {size / gb:.2f} GiB | {size / max(rows, 1):.0f} |")

if __name__ == "__main__":
    main()
