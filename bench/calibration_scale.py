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
      plus `agreement_snapshots(run=run)` alone, warm, and the page again with the segment
      breakdown's over-200k check made before loading the run's labels (a what-if, patched here).
Prints a markdown table and the load average before and after (the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
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
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    if connection.vendor != "postgresql":
        sys.exit("needs PostgreSQL: run under ./run bench or set DATABASE_URL=postgres://…")
    load_before = os.getloadavg()
    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    call_command("calibration_synthetic", judgments=args.judgments, queries=args.queries,
                 humans_per_item=args.humans_per_item, human_fraction=args.human_fraction, seed=0,
                 name=args.name, reuse=True)
    build_s = time.perf_counter() - started

    from calibration import selectors
    from calibration.models import AgreementSnapshot
    from calibration.services import agreement_snapshots
    from judges.models import JudgeRun
    from review.models import HumanLabel

    run = JudgeRun.objects.select_related("judge_version__policy_version").get(
        judge_version__judge__name=f"{args.name}-judge")
    n_judgments = run.judgments.count()
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
    with mock.patch.object(selectors, "use_sql_path", return_value=False):
        loader_base_t, _ = timed(lambda: selectors.run_labels(run, "relevance"), 1)

    # (c) the page with warm snapshots.
    AgreementSnapshot.objects.filter(run=run).delete()
    cold_snap_t, _ = timed(lambda: agreement_snapshots(run=run), 1)
    warm_snap_t, _ = timed(lambda: agreement_snapshots(run=run), max(args.pages, 3))
    from django.contrib.auth import get_user_model

    client = Client()
    client.force_login(get_user_model().objects.get(username=f"{args.name}-admin"))
    url = f"/calibration/runs/{run.pk}/"
    first = client.get(url)
    page_t: list[float] = []
    status = first.status_code
    if status == 200:
        page_t, _ = timed(lambda: client.get(url), args.pages)
    # What-if: `dashboard.segment_breakdown` returns None above 200k items, but only after loading
    # every judgment label of the run; skipping it from run.total_items instead (no load) gives this.
    import calibration.views as views

    original = views.segment_breakdown

    def segment_breakdown(run, *, metric, max_items=200_000):
        return None if run.total_items > max_items else original(run, metric=metric, max_items=max_items)

    skip_t: list[float] = []
    with mock.patch.object(views, "segment_breakdown", segment_breakdown):
        if client.get(url).status_code == 200:
            skip_t, _ = timed(lambda: client.get(url), args.pages)
    load_after = os.getloadavg()

    r = fast[0]
    print(f"\n## Calibration at scale — run {run.pk}: {n_judgments:,} judgments, {n_humans:,} latest human labels "
          f"on its items, {r.n:,} paired items over {r.n_queries:,} queries\n")
    print(f"kappa {r.estimates['kappa']:.4f} [{r.ci['kappa'][0]:.4f}, {r.ci['kappa'][1]:.4f}], "
          f"quadratic {r.estimates['kappa_quadratic']:.4f}, alpha {r.estimates['alpha']:.4f}; "
          f"set built or reused in {build_s:.1f} s\n")
    print("| measurement | median | runs |")
    print("|---|---:|---:|")
    rows = [
        ("cold agreement, PostgreSQL path (`agreement_run_vs_humans`, 1,000 resamples)", fast_t),
        ("  of which SQL: per-query confusion counts (`run_vs_humans_counts`)", sql_t),
        ("  of which numpy/sklearn/krippendorff + bootstrap (`agreement_from_counts`)", numpy_t),
        ("cold agreement, baseline ORM path (before)", base_t),
        ("`run_labels` 1M judgments, one bytea per column → numpy", loader_t),
        ("`run_labels` 1M judgments, ORM (before)", loader_base_t),
        ("`agreement_snapshots` cold (computes and stores)", cold_snap_t),
        ("`agreement_snapshots` warm", warm_snap_t),
        (f"run page `{url}` server time, warm snapshots (HTTP {status})", page_t),
        ("same page, segment breakdown skipped from `run.total_items` (what-if, see notes)", skip_t),
    ]
    for label, times in rows:
        print(f"| {label} | {fmt(times)} | {len(times)} |")
    print(f"\nall runs (s): " + "; ".join(f"{label.strip()[:40]}: {[round(t, 3) for t in times]}" for label, times in rows))
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, PostgreSQL {connection.cursor().connection.info.server_version}; "
          f"load average before {tuple(round(x, 2) for x in load_before)}, after {tuple(round(x, 2) for x in load_after)}")


if __name__ == "__main__":
    main()
