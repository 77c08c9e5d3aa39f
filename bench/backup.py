"""Benchmark: `manage.py sage_export` and `sage_import` on a synthetic calibration set (PostgreSQL).

    ./run bench .venv/bin/python bench/backup.py --judgments 100000 --repeat 3

Migrates, builds the set with `manage.py calibration_synthetic` (reused when present), then --repeat
times: exports it (plain .jsonl and .jsonl.gz, each a fresh `manage.py` process), creates an empty
database on the same server, migrates it, imports the .gz into it and exports it again; the records
of the two exports must be identical (checked every time). Times are the commands' own figures
(the service call, not Python's start-up); medians are printed with the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sage.settings")

FIGURE = re.compile(r"(Exported|Imported) ([\d,]+) records .* in ([\d.]+) s")


PEAK_RSS_MB: dict[str, float] = {}
LAUNCHER = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:]); _, s, r = os.wait4(p.pid, 0); "
            "print('PEAK_RSS_KB', r.ru_maxrss, flush=True); sys.exit(os.waitstatus_to_exitcode(s))")


def manage(*args: str, database_url: str) -> tuple[int, float]:
    """Run a manage.py command in a fresh process; (records, seconds) from its closing line. Its peak
    resident memory goes to PEAK_RSS_MB (the largest seen per command and file kind)."""
    env = {**os.environ, "DATABASE_URL": database_url}
    with tempfile.TemporaryFile("w+") as out:
        # Through a small launcher: a child forked straight from this (large) process would count this
        # process's pages in its peak RSS, which survives exec.
        proc = subprocess.run([sys.executable, "-c", LAUNCHER, sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                              text=True, stdout=out, stderr=subprocess.STDOUT)
        out.seek(0)
        text = out.read()
        if proc.returncode:
            raise SystemExit(f"manage.py {' '.join(args)} exited {proc.returncode}:\n{text[-3000:]}")
    key = f"{args[0]} {Path(args[1]).name.split('.', 1)[-1]}" if len(args) > 1 and "." in args[1] else args[0]
    peak = re.search(r"PEAK_RSS_KB (\d+)", text)
    if peak:
        PEAK_RSS_MB[key] = max(PEAK_RSS_MB.get(key, 0), int(peak.group(1)) / 1024)
    match = FIGURE.search(text)
    return (int(match.group(2).replace(",", "")), float(match.group(3))) if match else (0, 0.0)


def records(path: Path) -> list[bytes]:
    from sage.backup import backup_lines

    return list(backup_lines(path))[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--judgments", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--name", default="synthetic")
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor != "postgresql":
        sys.exit("needs PostgreSQL: run under ./run bench or set DATABASE_URL=postgres://…")
    source_url = os.environ["DATABASE_URL"]
    restore_url = source_url.rsplit("/", 1)[0] + "/sage_restore"
    load_before = os.getloadavg()
    call_command("migrate", verbosity=0)
    manage("check", database_url=source_url)  # the peak RSS of a bare manage.py, for comparison
    call_command("calibration_synthetic", judgments=args.judgments, queries=args.queries, seed=0, name=args.name,
                 reuse=True, no_progress=True)
    connection.close()

    export_s, export_gz_s, import_s = [], [], []
    total = 0
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        plain, packed, again = Path(tmp) / "b.jsonl", Path(tmp) / "b.jsonl.gz", Path(tmp) / "again.jsonl"
        for _ in range(args.repeat):
            total, seconds = manage("sage_export", str(plain), "-v0", database_url=source_url)
            export_s.append(seconds)
            _, seconds = manage("sage_export", str(packed), "-v0", database_url=source_url)
            export_gz_s.append(seconds)
            with connection.cursor() as cursor:  # autocommit: CREATE DATABASE cannot run in a transaction
                cursor.execute("DROP DATABASE IF EXISTS sage_restore")
                cursor.execute("CREATE DATABASE sage_restore")
            connection.close()
            subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True,
                           env={**os.environ, "DATABASE_URL": restore_url})
            imported, seconds = manage("sage_import", str(packed), "-v0", database_url=restore_url)
            import_s.append(seconds)
            assert imported == total, (imported, total)
            manage("sage_export", str(again), "-v0", database_url=restore_url)
            assert records(plain) == records(again), "the restored instance exports other records"
        sizes = {"jsonl": plain.stat().st_size, "jsonl.gz": packed.stat().st_size}
    load_after = os.getloadavg()

    def line(name: str, times: list[float]) -> str:
        med = statistics.median(times)
        return f"| {name} | {med:.1f} s | {total / med:,.0f} | {', '.join(f'{t:.1f}' for t in times)} |"

    print(f"\n{total:,} records ({args.judgments:,} judgments); export sizes: "
          + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items()))
    print("| step | median | records/s | runs (s) |\n|---|---|---|---|")
    print(line("export .jsonl", export_s))
    print(line("export .jsonl.gz", export_gz_s))
    print(line("import .jsonl.gz into an empty database", import_s))
    print(f"round trip: records identical in all {args.repeat} runs; peak RSS per process: "
          + ", ".join(f"{k} {v:,.0f} MB" for k, v in PEAK_RSS_MB.items()))
    print(f"load average before {load_before[0]:.1f} / {load_before[1]:.1f}, after {load_after[0]:.1f} / {load_after[1]:.1f}"
          f" (1 / 5 min); {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
