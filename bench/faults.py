"""Judge runs, student training and gate runs survive faults of the model, the workers, Redis and PostgreSQL.

    ./run bench nice -n 19 .venv/bin/python bench/faults.py [--scenario judge|student|gate|all] [--items 5000]

The bench starts services of its own, so it can restart them: a PostgreSQL cluster (initdb in a
temporary folder, the throwaway options `./run` uses), a Redis server **without persistence** (`--save ''
--appendonly no`: a restart loses every queued and unacknowledged task message, the hardest case),
two real Celery worker processes (prefork, one child each; each in its own process group so a SIGKILL
takes the whole worker, as a lost host would) and a `celery beat` process that schedules the sweeps.
The stall thresholds are lowered (SAGE_JUDGE_STALL_S=20, sweeps every 5 s) so recovery takes seconds.
Workers log JSON (SAGE_LOG_FORMAT=json) to files under the bench's temporary folder.

`judge` (the default): a run of --items items against the fault server at 50 ms with 20% faults of
mixed kinds: 4% each of 429 with Retry-After, 500, malformed JSON, out-of-scale labels, and timeouts
(half of them hang past the client's 5 s timeout, half drop the connection). While it runs, at 20%,
45% and 70% of the items judged: worker 1 is SIGKILLed and a replacement started; Redis is stopped
and started again on the same port; PostgreSQL is restarted (`pg_ctl restart -m fast`). Nobody acts by
hand. At the end SQL checks that every item has exactly one judgment (a label or a recorded error).

`student`: a tiny student training (tests/distill's helpers) on the distill queue; the worker training
it is SIGKILLed mid-training and a replacement started; the run must end succeeded with one StudentModel.
`gate`: a gate run whose comparison's judge run is on the workers; a worker is SIGKILLed mid-judging and
replaced; the gate run must end with one verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.judge_runs import free_port, make_items, setup_django  # noqa: E402

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []


class Postgres:
    """A throwaway cluster of the bench's own, so it can be restarted."""

    def __init__(self, base: Path) -> None:
        self.dir = base / "pg"
        self.dir.mkdir()
        os.chmod(self.dir, 0o755)
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres")
        self.port = free_port()
        subprocess.run([*_as_postgres(), str(PG_BIN / "initdb"), "-D", str(self.dir / "data"), "-A", "trust",
                        "-U", "sage", "--no-sync", "-E", "UTF8"], check=True, stdout=subprocess.DEVNULL)
        self._ctl("start")
        subprocess.run([*_as_postgres(), str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                        "-U", "sage", "sage"], check=True)
        self.url = f"postgres://sage@127.0.0.1:{self.port}/sage"

    def _ctl(self, *action: str) -> None:
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=200")
        subprocess.run([*_as_postgres(), str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-l",
                        str(self.dir / "log"), "-w", *action, "-o", opts], check=True, stdout=subprocess.DEVNULL)

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        subprocess.run([*_as_postgres(), str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate",
                        "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Redis:
    """A Redis without persistence: a restart empties it."""

    def __init__(self, base: Path) -> None:
        self.dir = base / "redis"
        self.dir.mkdir()
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        subprocess.run(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--daemonize", "yes",
                        "--save", "", "--appendonly", "no", "--dir", str(self.dir), "--pidfile",
                        str(self.dir / "redis.pid"), "--logfile", str(self.dir / "redis.log")], check=True)
        for _ in range(100):
            if subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).returncode == 0:
                return
            time.sleep(0.05)

    def stop(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], capture_output=True)
        for _ in range(100):
            if subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).returncode != 0:
                return
            time.sleep(0.05)

    def restart(self, down_s: float = 1.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


class Celery:
    """Worker and beat processes, each in its own process group (a SIGKILL takes the pool child too)."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: dict[str, subprocess.Popen] = {}

    def _start(self, name: str, args: list[str]) -> None:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "celery", "-A", "sage", *args], cwd=ROOT,
                                            env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def worker(self, name: str) -> None:
        self._start(name, ["worker", "--concurrency=1", "--loglevel=INFO", "-n", f"{name}@%h"])

    def beat(self) -> None:
        self._start("beat", ["beat", "--loglevel=INFO", "-s", str(self.logs / "beat-schedule")])

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


class Timeline:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.events: list[tuple[float, str]] = []

    def mark(self, what: str) -> None:
        at = time.perf_counter() - self.t0
        self.events.append((at, what))
        print(f"  [{at:6.1f} s] {what}", flush=True)


def db_retry(read: Callable[[], Any]) -> Any:
    """A read by the bench itself, which waits out a PostgreSQL restart like any client."""
    from django.db import Error, connection

    for _ in range(120):
        try:
            return read()
        except Error:
            connection.close()
            time.sleep(0.5)
    raise SystemExit("the database did not come back in 60 s")


@contextmanager
def mixed_fault_server(**config: Any) -> Iterator[Any]:
    """The fault server, its timeouts split between hangs and dropped connections (one mode per server otherwise)."""
    from judges.testing import fault_server as fs

    class MixedFaultServer(fs.FaultServer):
        drops = 0

        async def _answer(self, request, body, messages, key, outcome):
            if outcome == "timeout":
                self.drops += 1
                if self.drops % 2:
                    with self._lock:
                        self._counts["dropped"] += 1
                    if request.transport is not None:
                        request.transport.abort()
                    raise asyncio.CancelledError
            return await super()._answer(request, body, messages, key, outcome)

    original = fs.FaultServer
    fs.FaultServer = MixedFaultServer
    try:
        with fs.running_fault_server(**config) as server:
            yield server
    finally:
        fs.FaultServer = original


def wait_until(what: str, predicate: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        value = db_retry(predicate)
        if value:
            return value
        time.sleep(every)
    raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")


# --- scenarios -------------------------------------------------------------------------------

def judge_scenario(n: int, pg: Postgres, redis: Redis, celery: Celery, server) -> None:
    from django.db import connection

    from judges.models import JudgeRun, Judgment
    from judges.services import judge_create, judge_run_start

    surface, version, sample, admin = make_items(n, f"faults-{int(time.time())}")
    jv = judge_create(name=f"bench faults {time.time()}", surface=surface, user=admin, backend="openai",
                      model_name="bench", endpoint_name="fault", policy_version=version, precedent_k=0,
                      concurrency=32)
    server.server.reset_stats()
    timeline = Timeline()
    load_before = os.getloadavg()
    run = judge_run_start(version=jv, sample=sample, user=admin)
    timeline.mark(f"run #{run.pk} started ({n} items)")
    faults: list[tuple[float, str, Callable[[], None]]] = [
        (0.20, "worker w1 SIGKILLed, replacement w1b started", lambda: (celery.kill("w1"), celery.worker("w1b"))),
        (0.45, "Redis stopped, started again 1 s later (not persisted: queued messages lost)", redis.restart),
        (0.70, "PostgreSQL restarted (pg_ctl restart -m fast)", pg.restart),
    ]
    status, seen = "queued", ("queued", "")
    while True:
        done, (status, message) = db_retry(lambda: (Judgment.objects.filter(run_id=run.pk).count(),
                                                    JudgeRun.objects.values_list("status", "message").get(pk=run.pk)))
        # The stall sweep queueing the run again shows in its message: the status is back to running
        # (a worker claimed it) before the next poll as a rule.
        if (status, message) != seen:
            timeline.mark(f"{done} judged: run {seen[0]} -> {status}" + (f" ({message})" if message else ""))
            seen = (status, message)
        if faults and done >= n * faults[0][0]:
            share, what, act = faults.pop(0)
            timeline.mark(f"{done} judged: {what}")
            act()
            timeline.mark(f"  {what.split(',')[0].split(' (')[0]}: done")
        if status not in JudgeRun.ACTIVE:
            break
        if time.perf_counter() - timeline.t0 > 1800:
            raise SystemExit(f"run not finished after 1800 s: {done}/{n}")
        time.sleep(0.5)
    wall = time.perf_counter() - timeline.t0
    timeline.mark(f"run ended: {status}")
    load_after = os.getloadavg()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), count(DISTINCT item_id) FROM judges_judgment WHERE run_id = %s", [run.pk])
        total, distinct = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM (SELECT item_id FROM judges_judgment WHERE run_id = %s GROUP BY item_id "
                       "HAVING count(*) > 1) d", [run.pk])
        dupes = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM traffic_sampleitem s WHERE s.sample_id = %s AND NOT EXISTS "
                       "(SELECT 1 FROM judges_judgment j WHERE j.run_id = %s AND j.item_id = s.item_id)",
                       [sample.pk, run.pk])
        missing = cursor.fetchone()[0]
        cursor.execute("SELECT error_kind, count(*) FROM judges_judgment WHERE run_id = %s GROUP BY error_kind "
                       "ORDER BY 2 DESC", [run.pk])
        kinds = dict(cursor.fetchall())
    ok = kinds.pop("", 0)
    injected = server.stats()["by_outcome"]
    injected["dropped"] = server.server._counts.get("dropped", 0)
    print(f"\nload average before {' '.join(f'{x:.2f}' for x in load_before)}, after "
          f"{' '.join(f'{x:.2f}' for x in load_after)}")
    print(f"model requests by outcome: {injected}\n")
    print("| items | judgments | distinct items | items without one | duplicates | ok | recorded errors by kind | "
          "run status | wall s |")
    print("|---:|---:|---:|---:|---:|---:|---|---|---:|")
    errors = ", ".join(f"{k} {v}" for k, v in kinds.items()) or "none"
    print(f"| {n:,} | {total:,} | {distinct:,} | {missing} | {dupes} | {ok:,} | {errors} | {status} | {wall:.0f} |")
    print("\n| at | event |\n|---:|---|")
    for at, what in timeline.events:
        print(f"| {at:.1f} s | {what} |")
    assert total == distinct == n and dupes == 0 and missing == 0, "lost or duplicated judgments"


def student_scenario(celery: Celery) -> None:
    from distill.models import StudentModel
    from distill.services import TeacherSource, student_train_start, training_set_build
    from tests.distill.app_helpers import relevant, teacher_run, world

    w = world(queries=12, depth=4, slug=f"faults-distill-{int(time.time())}")
    run = teacher_run(w, f"teacher {time.time()}", relevant)
    ts = training_set_build(name=f"faults {time.time()}", policy_version=w.version, teachers=[TeacherSource(run)],
                            user=w.analyst, fractions={"train": 0.5, "validation": 0.25, "test": 0.25})
    timeline = Timeline()
    student = student_train_start(training_set=ts, user=w.analyst, config={
        "epochs": 4, "max_length": 32, "batch_size": 4, "patience": 4, "checkpoint_every_steps": 1})
    timeline.mark(f"student #{student.pk} training queued")
    step = wait_until("training to reach step 3", lambda: StudentModel.objects.filter(
        pk=student.pk, status="running", step__gte=3).values_list("step", flat=True).first(), 600)
    holder = _worker_holding(celery, "distill.tasks.student_train_task")
    if holder is None:
        raise SystemExit("no worker's log shows the training running")
    timeline.mark(f"step {step}: worker {holder} (training it) SIGKILLed, replacement {holder}b started")
    celery.kill(holder)
    celery.worker(f"{holder}b")
    final = wait_until("training to end", lambda: StudentModel.objects.filter(
        pk=student.pk).exclude(status__in=("queued", "running")).first(), 900)
    timeline.mark(f"training ended: {final.status} at step {final.step}, epoch {final.epoch}; {final.message}")
    count = StudentModel.objects.filter(training_set=ts).count()
    print(f"\nStudentModels of the training set: {count}; status {final.status}; resumes {final.resumes}; "
          f"model hash {final.model_hash[:12] or '-'}; message: {final.message}")
    for at, what in timeline.events:
        print(f"| {at:.1f} s | {what} |")
    assert final.status == "succeeded" and count == 1, (final.status, count)


def gate_scenario(celery: Celery) -> None:
    import io

    from bench.gate import rows
    from comparisons.models import Comparison  # noqa: F401 - the gate run's comparison
    from gates.models import GateRun
    from gates.services import gate_create, gate_run_start
    from judges.models import JudgeRun, Judgment
    from judges.services import judge_create
    from policy.rubric import trec_relevance_dimension
    from policy.services import policy_create, policy_version_publish, surface_get_or_create
    from sage.roles import Role
    from sage.services import user_upsert
    from traffic.services import traffic_import, variant_get_or_create

    stamp = int(time.time())
    queries, k = 150, 10
    admin, _ = user_upsert(username="bench-admin", password=None, roles=[Role.ADMIN])
    surface = surface_get_or_create(slug=f"faults-gate-{stamp}", name="faults gate")
    control = variant_get_or_create(surface=surface, name="control", role="control")
    traffic_import(surface=surface, source=io.BytesIO(rows("control", queries, k, 5)), filename="control.jsonl",
                   user=admin)
    draft = policy_create(surface=surface, slug="rel", name="Relevance", text="# Relevance\n\nJudge passages.\n",
                          rubric={"dimensions": [trec_relevance_dimension()]}, user=admin)
    policy = policy_version_publish(draft=draft, user=admin, change_note="bench", expected_lock_version=draft.lock_version)
    judge = judge_create(name=f"gate faults {stamp}", surface=surface, user=admin, backend="openai",
                         model_name="bench", endpoint_name="fault", policy_version=policy, precedent_k=0, concurrency=4)
    gate = gate_create(user=admin, name=f"faults-{stamp}", surface=surface, baseline=control, judge_version=judge, k=k,
                       metrics={f"ndcg@{k}": -0.02}, timeout_s=1800)
    timeline = Timeline()
    start = gate_run_start(gate=gate, candidate="candidate", user=admin, source=GateRun.Source.COMMAND,
                           traffic=io.BytesIO(rows("candidate", queries, k, 5)), filename="candidate.jsonl")
    timeline.mark(f"gate run #{start.run.pk} started")
    judge_run_id = wait_until("the comparison's judge run", lambda: GateRun.objects.filter(pk=start.run.pk).values_list(
        "comparison__judge_run", flat=True).first(), 120)
    total = JudgeRun.objects.get(pk=judge_run_id).total_items
    done = wait_until("a fifth judged", lambda: (lambda c: c if c >= total // 5 else None)(
        Judgment.objects.filter(run_id=judge_run_id).count()), 600, every=0.2)
    holder = _worker_holding(celery, "judges.tasks.judge_run_chunk_task") or next(n for n in celery.procs if n != "beat")
    timeline.mark(f"{done} of {total} judged: worker {holder} SIGKILLed, replacement {holder}b started")
    celery.kill(holder)
    celery.worker(f"{holder}b")
    final = wait_until("the gate's verdict", lambda: GateRun.objects.filter(pk=start.run.pk).exclude(
        status="running").first(), 1200)
    timeline.mark(f"gate run ended: {final.status} (exit {final.exit_code})")
    runs = GateRun.objects.filter(gate=gate).count()
    judged = Judgment.objects.filter(run_id=judge_run_id)
    print(f"\ngate runs: {runs}; status {final.status}; judgments {judged.count()} of {total}, distinct "
          f"{judged.values('item_id').distinct().count()}; {final.message}")
    for at, what in timeline.events:
        print(f"| {at:.1f} s | {what} |")
    assert runs == 1 and final.status in ("passed", "failed") and judged.count() == total, final.status


def _worker_holding(celery: Celery, task: str) -> str | None:
    """The bench's worker now executing a `task`: one whose log shows it received one and has not
    finished it. (A long task is delivered again once the visibility timeout passes; the second
    worker answers "claimed-elsewhere" at once, so the last worker to receive it need not hold it.)"""
    import json
    import re

    for name in celery.procs:
        path = celery.logs / f"{name}.log"
        if name == "beat" or not path.exists():
            continue
        running: set[str] = set()
        for line in path.read_text(errors="replace").splitlines():
            try:
                message = str(json.loads(line).get("message", ""))
            except ValueError:
                message = line
            found = re.search(rf"Task {re.escape(task)}\[([0-9a-f-]+)\] (received|succeeded|failed|raised|retry)", message)
            if found:
                (running.add if found.group(2) == "received" else running.discard)(found.group(1))
        if running:
            return name
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=("judge", "student", "gate", "all"), default="judge")
    parser.add_argument("--items", type=int, default=5000)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="sage-faults-"))
    os.chmod(base, 0o755)
    pg = Postgres(base)
    redis = Redis(base)
    logs = base / "logs"
    logs.mkdir()
    celery: Celery | None = None
    print(f"logs: {logs}", flush=True)
    try:
        with mixed_fault_server(latency_ms=50, rate_429=0.04, rate_500=0.04, rate_timeout=0.04, rate_malformed=0.04,
                                rate_out_of_scale=0.04, retry_after_s=0.2, timeout_sleep_s=20, seed=11) as server:
            data_dir = base / "data"
            data_dir.mkdir()
            env = {"DATABASE_URL": pg.url, "CELERY_BROKER_URL": redis.url, "SAGE_DATA_DIR": str(data_dir),
                   "SAGE_ENDPOINTS": "fault", "SAGE_ENDPOINT_FAULT_BASE_URL": server.base_url,
                   "SAGE_ENDPOINT_FAULT_API_KEY": "bench", "SAGE_ENDPOINT_FAULT_JSON_MODE": "json_schema",
                   "CELERY_VISIBILITY_TIMEOUT": "30", "SAGE_JUDGE_CHUNK_SIZE": "100", "SAGE_JUDGE_TIMEOUT_S": "5",
                   "SAGE_JUDGE_STALL_S": "20", "SAGE_JUDGE_SWEEP_S": "5", "SAGE_DISTILL_STALL_S": "20",
                   "SAGE_GATE_POLL_S": "1", "SAGE_COMPARISON_POLL_S": "1", "SAGE_DISTILL_TORCH_THREADS": "1",
                   "SAGE_LOG_FORMAT": "json"}
            setup_django(env)
            celery = Celery(env, logs)
            celery.worker("w1")
            celery.worker("w2")
            celery.beat()
            time.sleep(8)
            if args.scenario in ("judge", "all"):
                judge_scenario(args.items, pg, redis, celery, server)
            if args.scenario in ("student", "all"):
                student_scenario(celery)
            if args.scenario in ("gate", "all"):
                gate_scenario(celery)
    finally:
        if celery is not None:
            celery.stop_all()
        redis.stop()
        pg.stop()
        if os.environ.get("SAGE_FAULTS_KEEP") != "1":
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
