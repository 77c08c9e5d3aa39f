from __future__ import annotations

import sys
import time
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from ...models import Gate, GateRun
from ...reports import write_json, write_junit
from ...selectors import gate_run_report
from ...services import GateError, gate_run_fail, gate_run_refresh, gate_run_start
from ...verdict import describe_metric


class Command(BaseCommand):
    help = ("Run a regression gate for a candidate variant and wait for the verdict, with a progress bar of judged "
            "items. Exits 0 when it passes, 1 on a regression, 2 on an error or an inconclusive result. Writes a "
            "JSON and a JUnit XML report when asked. Needs the database and running Celery workers (the judging "
            "happens there).")

    def add_arguments(self, parser) -> None:
        parser.add_argument("gate", help="the gate's name")
        parser.add_argument("--candidate", required=True, help="the candidate variant's name")
        parser.add_argument("--traffic", help="the candidate's traffic file (.jsonl or .csv), imported first")
        parser.add_argument("--json", dest="json_out", help="write the JSON report here")
        parser.add_argument("--junit", dest="junit_out", help="write the JUnit XML report here")
        parser.add_argument("--timeout", type=float, default=0,
                            help="give up after this many seconds: the run ends as an error (exit 2); "
                                 "default: the gate's own timeout")
        parser.add_argument("--poll", type=float, default=1.0, help="seconds between progress checks")
        parser.add_argument("--user", help="run as this analyst (default: the system, no user)")
        parser.add_argument("--client-key", default="", help="a CI attempt id: a retried job with the same key "
                                                             "follows the earlier run instead of starting another")

    def handle(self, *args, **opts) -> None:
        try:
            code = self._run(opts)
        except GateError as exc:
            # CI's report steps still find their files: one error testcase saying why nothing ran.
            report = {"gate": opts["gate"], "candidate": opts["candidate"], "baseline": None, "run": None,
                      "status": "error", "exit_code": 2, "message": str(exc), "metrics": {}, "comparison": None}
            if opts["json_out"]:
                write_json(report, opts["json_out"])
            if opts["junit_out"]:
                write_junit(report, opts["junit_out"])
            raise CommandError(str(exc), returncode=2) from None
        if code:
            raise CommandError(self._summary, returncode=code)

    def _run(self, opts: dict) -> int:
        gate = Gate.objects.select_related("surface", "baseline", "judge_version").filter(name=opts["gate"]).first()
        if gate is None:
            raise GateError(f"No gate named {opts['gate']!r}.")
        user = None
        if opts["user"]:
            user = get_user_model().objects.filter(username=opts["user"]).first()
            if user is None:
                raise GateError(f"No user {opts['user']!r}.")
        traffic = None
        if opts["traffic"]:
            path = Path(opts["traffic"])
            if not path.is_file():
                raise GateError(f"No traffic file at {path}.")
            traffic = path.open("rb")
        try:
            started = gate_run_start(gate=gate, candidate=opts["candidate"], user=user, source=GateRun.Source.COMMAND,
                                     traffic=traffic, filename=path.name if traffic else "",
                                     client_key=opts["client_key"])
        finally:
            if traffic is not None:
                traffic.close()
        run = started.run
        if started.traffic_import is not None:
            record = started.traffic_import
            self.stderr.write(f"Traffic: {record.rows:,} rows " + ("imported." if started.traffic_created
                                                                   else "(this file was imported before)."))
        self.stderr.write(f"Gate {gate.name} run {run.pk}: {run.candidate.name} vs {gate.baseline.name}, "
                          f"comparison {run.comparison_id}.")
        run = self._follow(run, timeout=opts["timeout"] or gate.timeout_s, poll=opts["poll"])
        report = gate_run_report(run)
        if opts["json_out"]:
            write_json(report, opts["json_out"])
        if opts["junit_out"]:
            write_junit(report, opts["junit_out"])
        for name, row in (report.get("metrics") or {}).items():
            self.stdout.write(f"  {row.get('verdict') or '—':12} {describe_metric(name, row)}")
        if report.get("comparison"):
            self.stdout.write(f"  comparison: {report['comparison']['url']}")
        self._summary = f"Gate {gate.name}: {report['status']} — {report['message']}"
        self.stdout.write(self._summary)
        return int(report["exit_code"] if report.get("exit_code") is not None else 2)

    def _follow(self, run: GateRun, *, timeout: float, poll: float) -> GateRun:
        deadline = time.monotonic() + timeout
        # At most one bar update every 2 s: in a CI log (no terminal) each update is a line.
        with tqdm(total=0, unit="item", desc=f"gate {run.gate.name}", file=sys.stderr, mininterval=2) as bar:
            while True:
                run = gate_run_refresh(run_id=run.pk)
                if run.comparison is not None:
                    done, total = run.comparison.progress
                    bar.total, bar.n = total, done
                    bar.set_postfix(status=run.comparison.status)
                    bar.refresh()
                if not run.is_active:
                    return run
                if time.monotonic() >= deadline:
                    gate_run_fail(run_id=run.pk, reason=f"Timed out: no verdict after {timeout:g} s (the comparison "
                                                        "goes on; a new run reuses its judgments).")
                    return GateRun.objects.select_related("gate", "candidate", "comparison").get(pk=run.pk)
                time.sleep(poll)
