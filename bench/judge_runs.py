"""Judge runs end to end through the services, PostgreSQL and the fault-injecting server.

    ./run bench .venv/bin/python bench/judge_runs.py throughput   # c=1,16,64 at 200 ms
    ./run bench .venv/bin/python bench/judge_runs.py scaleout     # one run on 1 vs 2 Celery workers
    ./run bench .venv/bin/python bench/judge_runs.py faults       # 5,000 items, 20% faults, SIGKILL

throughput: judges N items in-process through `judge_run_chunk` (prompt build, cache lookup, engine,
bulk DB writes, counters) against a fault-free server at 200 ms; reports judgments/s, the ratio to
the ideal (concurrency / latency) and our overhead per judgment (wall time minus the ideal, per item).

scaleout: one run of 5,120 items (chunks of 1,280) at c=64 per worker, on 1 and then 2 real Celery
worker processes (Redis broker, PostgreSQL) against the same fault-free 200 ms server; reports each
wall time, the 2-worker/1-worker ratio and the CPU each process spent per judgment (workers, model
server, PostgreSQL), which says what the ratio would be on cores of its own.

Both modes take `--code DIR` to judge with another checkout (e.g. `git worktree add /tmp/base HEAD`)
for side-by-side figures: that tree's Django project and judge code, this tree's fault server.

faults: bench/faults.py's judge scenario (a 5,000-item run on two real Celery workers against 20% injected
faults while a worker is SIGKILLed, Redis restarted and PostgreSQL restarted; see that file).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CODE = ROOT  # the checkout whose judge code runs (--code)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup_django(extra_env: dict[str, str]) -> None:
    os.environ.update(extra_env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sage.settings")
    # Celery's Django fix-up puts the working directory first on sys.path while Django sets up, ahead
    # of --code: run from the code's own directory, or every "other" tree is silently this one.
    os.chdir(CODE)
    import django

    django.setup()
    import judges

    loaded = Path(judges.__file__).resolve().parent.parent
    if loaded != CODE.resolve():
        raise SystemExit(f"the judge code loaded from {loaded}, not from {CODE}")
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def make_items(n: int, slug: str):
    import io
    import json


    from policy.rubric import trec_relevance_dimension
    from policy.services import policy_create, policy_version_publish, surface_get_or_create
    from sage.services import user_upsert
    from sage.roles import Role
    from traffic.services import sample_draw, traffic_import, variant_get_or_create

    admin, _ = user_upsert(username="bench-admin", password=None, roles=[Role.ADMIN])
    surface = surface_get_or_create(slug=slug, name=slug)
    variant_get_or_create(surface=surface, name="control", role="control")
    rows = b"".join(json.dumps({"variant": "control", "query": f"bench query {i // 10}", "rank": i % 10 + 1,
                                "doc_id": f"{slug}-d{i}", "body": f"Passage {i} about topic {i % 97}. " * 8}).encode() + b"\n"
                    for i in range(n))
    traffic_import(surface=surface, source=io.BytesIO(rows), filename=f"{slug}.jsonl", user=admin)
    draft = policy_create(surface=surface, slug="rel", name="Relevance", text="# Relevance\n\nJudge passages.\n",
                          rubric={"dimensions": [trec_relevance_dimension()]}, user=admin)
    version = policy_version_publish(draft=draft, user=admin, change_note="bench", expected_lock_version=draft.lock_version)
    sample = sample_draw(surface=surface, name="all", strategy="uniform", params={"size": n}, seed=0, user=admin)
    return surface, version, sample, admin


def start_fault_server(latency_ms: int = 200) -> tuple[subprocess.Popen, str]:
    """The fault-free server in its own process, as a model server would be: in the judge's process
    it would compete with the judge for the GIL and make our path look slower than it is."""
    import urllib.request

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "judges.testing.fault_server", "--port", str(port),
                             "--latency-ms", str(latency_ms)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}/v1"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{base_url}/models", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    return proc, base_url


def fault_env(base_url: str) -> dict[str, str]:
    return {"SAGE_ENDPOINTS": "fault", "SAGE_ENDPOINT_FAULT_BASE_URL": base_url, "SAGE_ENDPOINT_FAULT_API_KEY": "bench",
            "SAGE_ENDPOINT_FAULT_JSON_MODE": "json_schema"}


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def throughput(n_per_level: dict[int, int], runs: int = 1, clients: tuple[str, ...] = ("direct",)) -> None:
    server_proc, base_url = start_fault_server()
    try:
        _throughput(n_per_level, base_url, runs, clients)
    finally:
        server_proc.terminate()


def _throughput(n_per_level: dict[int, int], base_url: str, runs: int, clients: tuple[str, ...]) -> None:
    import statistics

    setup_django(fault_env(base_url))
    import sage.celery
    from django.conf import settings
    from judges.models import JudgeRun
    from judges.services import judge_create, judge_run_chunk

    # As a worker process does once it is set up (the --code tree's own, if it has it).
    freeze = getattr(sage.celery, "freeze_startup_objects", None)
    if freeze is not None:
        freeze()

    print(f"code: {CODE}")
    print("| client | concurrency | items | wall s | judgments/s | ideal/s | % of ideal | caller CPU ms/judgment "
          "| process CPU ms/judgment | load 1/5/15 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    ratios: dict[tuple[str, int], list[float]] = {}
    cpu: dict[tuple[str, int], list[float]] = {}
    import judges.core.openai_backend as backend_module

    if not hasattr(backend_module, "CLIENTS"):
        clients = ("(the tree's own)",)  # a --code tree from before the endpoint client setting: the SDK
    # Each run takes every client in turn, so their figures share the machine's moment.
    for _, client, (concurrency, n) in ((r, c, level) for r in range(runs) for level in n_per_level.items()
                                        for c in clients):
        settings.SAGE_JUDGE_ENDPOINTS["fault"]["client"] = client
        surface, version, sample, admin = make_items(n, f"tp-c{concurrency}-{time.time_ns()}")
        jv = judge_create(name=f"bench c{concurrency} {time.time()}", surface=surface, user=admin, backend="openai",
                          model_name="bench", endpoint_name="fault", policy_version=version, precedent_k=0,
                          concurrency=concurrency)
        run = JudgeRun.objects.create(judge_version=jv, sample=sample, total_items=sample.item_count,
                                      status="running", bypass_cache=True)
        ids = list(sample.sample_items.values_list("item_id", flat=True))
        start, thread_start, process_start = time.perf_counter(), time.thread_time(), time.process_time()
        judge_run_chunk(run_id=run.pk, item_ids=ids)
        wall = time.perf_counter() - start
        # The caller's thread: loading, prompt build, cache lookup, bulk DB writes and counters.
        # The process: that plus the HTTP client on the engine's event-loop thread (one GIL).
        caller_ms = (time.thread_time() - thread_start) / n * 1000
        process_ms = (time.process_time() - process_start) / n * 1000
        run.refresh_from_db()
        assert run.done_items == n, (run.done_items, n)
        rate = n / wall
        ideal = concurrency / 0.2
        ratios.setdefault((client, concurrency), []).append(100 * rate / ideal)
        cpu.setdefault((client, concurrency), []).append(process_ms)
        print(f"| {client} | {concurrency} | {n} | {wall:.2f} | {rate:.1f} | {ideal:.1f} | {100 * rate / ideal:.1f}% "
              f"| {caller_ms:.2f} | {process_ms:.2f} | {load()} |", flush=True)
    if runs > 1:
        print("medians: " + ", ".join(f"{client} c={c} {statistics.median(r):.1f}% "
                                      f"({statistics.median(cpu[client, c]):.2f} ms CPU/judgment)"
                                      for (client, c), r in ratios.items()))


# --- scale-out ---------------------------------------------------------------------------------

def _cpu_ticks(pids: list[int]) -> int:
    """utime + stime of `pids` and all their descendants (clock ticks), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo, seen = 0, list(pids), set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
        todo += children.get(pid, [])
    return total


def _postmaster_pid() -> int | None:
    """The PostgreSQL server of DATABASE_URL (./run bench's throwaway cluster), found by its port."""
    port = os.environ.get("DATABASE_URL", "").rsplit(":", 1)[-1].split("/")[0]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"postgres") and b"-p" in argv and port.encode() in argv:
                return int(entry)
    return None


def scaleout(items: int, chunk: int, concurrency: int, runs: int) -> None:
    import statistics

    server_proc, base_url = start_fault_server()
    env = {**fault_env(base_url), "SAGE_JUDGE_CHUNK_SIZE": str(chunk)}
    workers: list[subprocess.Popen] = []
    try:
        setup_django(env)
        from judges.models import JudgeRun
        from judges.services import judge_create, judge_run_start
        from sage.celery import app

        tick = os.sysconf("SC_CLK_TCK")
        postmaster = _postmaster_pid()
        print(f"code: {CODE}; {items} items in chunks of {chunk or 'the automatic size'}, c={concurrency} per worker, "
              "200 ms server")
        print("| workers | items | wall s | judgments/s | ideal/s | % of ideal | worker CPU ms/judgment "
              "| server CPU ms/judgment | PostgreSQL CPU ms/judgment | load 1/5/15 |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        rates: dict[int, list[float]] = {}
        cpu_per_judgment: list[float] = []
        for _ in range(runs):
            for n_workers in (1, 2):
                surface, version, sample, admin = make_items(items, f"so-w{n_workers}-{time.time_ns()}")
                jv = judge_create(name=f"bench scaleout {time.time_ns()}", surface=surface, user=admin,
                                  backend="openai", model_name="bench", endpoint_name="fault", policy_version=version,
                                  precedent_k=0, concurrency=concurrency)
                workers = [subprocess.Popen([sys.executable, "-m", "celery", "-A", "sage", "worker", "--concurrency=1",
                                             "--loglevel=WARNING", "-n", f"so{i}-{time.time_ns()}@%h"], cwd=CODE,
                                            env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
                           for i in range(n_workers)]
                deadline = time.monotonic() + 120
                while len(app.control.ping(timeout=1.0) or []) < n_workers:
                    if time.monotonic() > deadline:
                        raise SystemExit("workers did not answer within 120 s")
                pids = [w.pid for w in workers]
                before = (_cpu_ticks(pids), _cpu_ticks([server_proc.pid]),
                          _cpu_ticks([postmaster]) if postmaster else 0)
                start = time.perf_counter()
                run = judge_run_start(version=jv, sample=sample, user=admin, bypass_cache=True)
                while JudgeRun.objects.filter(pk=run.pk, status__in=JudgeRun.ACTIVE).exists():
                    time.sleep(0.1)
                wall = time.perf_counter() - start
                after = (_cpu_ticks(pids), _cpu_ticks([server_proc.pid]), _cpu_ticks([postmaster]) if postmaster else 0)
                for w in workers:
                    w.terminate()
                for w in workers:
                    w.wait(timeout=30)
                workers = []
                run.refresh_from_db()
                assert run.status == JudgeRun.Status.SUCCEEDED and run.done_items == items, (run.status, run.done_items)
                worker_ms, server_ms, pg_ms = ((a - b) / tick * 1000 / items for a, b in zip(after, before))
                cpu_per_judgment.append(worker_ms + server_ms + pg_ms)
                rate = items / wall
                ideal = n_workers * concurrency / 0.2
                rates.setdefault(n_workers, []).append(rate)
                print(f"| {n_workers} | {items} | {wall:.2f} | {rate:.1f} | {ideal:.0f} | {100 * rate / ideal:.1f}% "
                      f"| {worker_ms:.2f} | {server_ms:.2f} | {pg_ms:.2f} | {load()} |", flush=True)
        one, two = statistics.median(rates[1]), statistics.median(rates[2])
        cpu = statistics.median(cpu_per_judgment)
        print(f"medians: 1 worker {one:.1f}/s, 2 workers {two:.1f}/s: **{two / one:.2f}x**; all processes together "
              f"{cpu:.2f} CPU ms/judgment, so {os.cpu_count()} free cores would carry at most "
              f"{os.cpu_count() * 1000 / cpu:.0f} judgments/s")
    finally:
        for w in workers:
            w.kill()
        server_proc.terminate()


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "throughput"
    if mode in ("throughput", "scaleout"):
        import argparse

        parser = argparse.ArgumentParser(prog=f"judge_runs.py {mode}")
        parser.add_argument("--code", type=Path, default=ROOT, help="the checkout whose judge code runs")
        parser.add_argument("--runs", type=int, default=1, help="repeat each measurement; medians at the end")
        parser.add_argument("--items", type=int, default=5120, help="scaleout: items in the run")
        parser.add_argument("--chunk", type=int, default=1280, help="scaleout: SAGE_JUDGE_CHUNK_SIZE (0: automatic)")
        parser.add_argument("--concurrency", type=int, default=64, help="scaleout: per worker")
        parser.add_argument("--clients", default="direct",
                            help="throughput: the endpoint's clients to take in turn, e.g. direct,sdk")
        args = parser.parse_args(sys.argv[2:])
        CODE = args.code.resolve()
        sys.path.insert(0, str(CODE))
    if mode == "throughput":
        throughput({1: 25, 16: 320, 64: 1280}, runs=args.runs, clients=tuple(args.clients.split(",")))
    elif mode == "scaleout":
        scaleout(args.items, args.chunk, args.concurrency, args.runs)
    elif mode == "faults":
        # bench/faults.py: the same run, plus Redis and PostgreSQL restarts and a beat process.
        from bench.faults import main as faults_main

        sys.argv = [sys.argv[0], "--scenario", "judge", "--items", sys.argv[2] if len(sys.argv) > 2 else "5000"]
        faults_main()
    else:
        raise SystemExit("usage: judge_runs.py throughput|scaleout [--code DIR] [--runs N] | faults [items]")
