"""Judge runs end to end through the services, PostgreSQL and the fault-injecting server.

    ./run bench .venv/bin/python bench/judge_runs.py throughput   # c=1,16,64 at 200 ms
    ./run bench .venv/bin/python bench/judge_runs.py faults       # 5,000 items, 20% faults, SIGKILL

throughput: judges N items in-process through `judge_run_chunk` (prompt build, cache lookup, engine,
bulk DB writes, counters) against a fault-free server at 200 ms; reports judgments/s, the ratio to
the ideal (concurrency / latency) and our overhead per judgment (wall time minus the ideal, per item).

faults: a 5,000-item run on two real Celery workers (Redis broker) against 20% injected faults
(5% each of 429 with Retry-After, 500, malformed JSON, out-of-scale labels); one worker is SIGKILLed
mid-run and restarted; reports that the run ends with exactly 5,000 judgments or recorded errors, 0 duplicates.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup_django(extra_env: dict[str, str]) -> None:
    os.environ.update(extra_env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sage.settings")
    import django

    django.setup()
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


def throughput(n_per_level: dict[int, int]) -> None:
    import urllib.request

    # The server runs in its own process, as a model server would: in this process it would compete
    # with the judge for the GIL and make our path look slower than it is.
    port = free_port()
    server_proc = subprocess.Popen([sys.executable, "-m", "judges.testing.fault_server", "--port", str(port),
                                    "--latency-ms", "200"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}/v1"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{base_url}/models", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    try:
        _throughput(n_per_level, base_url)
    finally:
        server_proc.terminate()


def _throughput(n_per_level: dict[int, int], base_url: str) -> None:
    setup_django({"SAGE_ENDPOINTS": "fault", "SAGE_ENDPOINT_FAULT_BASE_URL": base_url,
                  "SAGE_ENDPOINT_FAULT_API_KEY": "bench", "SAGE_ENDPOINT_FAULT_JSON_MODE": "json_schema"})
    from judges.models import JudgeRun
    from judges.services import judge_create, judge_run_chunk

    print("| concurrency | items | wall s | judgments/s | ideal/s | % of ideal | our CPU ms/judgment |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for concurrency, n in n_per_level.items():
        surface, version, sample, admin = make_items(n, f"tp-c{concurrency}-{int(time.time())}")
        jv = judge_create(name=f"bench c{concurrency} {time.time()}", surface=surface, user=admin, backend="openai",
                          model_name="bench", endpoint_name="fault", policy_version=version, precedent_k=0,
                          concurrency=concurrency)
        run = JudgeRun.objects.create(judge_version=jv, sample=sample, total_items=sample.item_count,
                                      status="running", bypass_cache=True)
        ids = list(sample.sample_items.values_list("item_id", flat=True))
        start, cpu_start = time.perf_counter(), time.thread_time()
        judge_run_chunk(run_id=run.pk, item_ids=ids)
        wall = time.perf_counter() - start
        # CPU of this (the caller's) thread: prompt build, cache lookup, parse hand-off, bulk DB
        # writes and counters; the HTTP client runs on the engine's own event-loop thread.
        ours_ms = (time.thread_time() - cpu_start) / n * 1000
        run.refresh_from_db()
        assert run.done_items == n, (run.done_items, n)
        rate = n / wall
        ideal = concurrency / 0.2
        print(f"| {concurrency} | {n} | {wall:.2f} | {rate:.1f} | {ideal:.1f} | {100 * rate / ideal:.1f}% | {ours_ms:.2f} |")


def faults(n: int = 5000) -> None:
    from judges.testing.fault_server import running_fault_server

    redis_dir = tempfile.mkdtemp(prefix="sage-bench-redis-")
    redis_port = free_port()
    subprocess.run(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--daemonize", "yes", "--save", "",
                    "--dir", redis_dir, "--pidfile", f"{redis_dir}/redis.pid"], check=True, stdout=subprocess.DEVNULL)
    workers: list[subprocess.Popen] = []
    try:
        with running_fault_server(latency_ms=50, rate_429=0.05, rate_500=0.05, rate_malformed=0.05,
                                  rate_out_of_scale=0.05, retry_after_s=0.2, seed=11) as server:
            env = {"SAGE_ENDPOINTS": "fault", "SAGE_ENDPOINT_FAULT_BASE_URL": server.base_url,
                   "SAGE_ENDPOINT_FAULT_API_KEY": "bench", "SAGE_ENDPOINT_FAULT_JSON_MODE": "json_schema",
                   "CELERY_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0", "CELERY_VISIBILITY_TIMEOUT": "30",
                   "SAGE_JUDGE_CHUNK_SIZE": "100"}
            setup_django(env)
            from django.db.models import Count

            from judges.models import Judgment
            from judges.services import judge_create, judge_run_start

            surface, version, sample, admin = make_items(n, f"faults-{int(time.time())}")
            jv = judge_create(name=f"bench faults {time.time()}", surface=surface, user=admin, backend="openai",
                              model_name="bench", endpoint_name="fault", policy_version=version, precedent_k=0,
                              concurrency=32)

            def start_worker(name: str) -> subprocess.Popen:
                return subprocess.Popen([sys.executable, "-m", "celery", "-A", "sage", "worker", "--concurrency=1",
                                         "--loglevel=WARNING", "-n", f"{name}@%h"], cwd=ROOT, env={**os.environ, **env},
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

            workers += [start_worker("w1"), start_worker("w2")]
            time.sleep(6)
            started = time.perf_counter()
            run = judge_run_start(version=jv, sample=sample, user=admin)
            killed = False
            while True:
                run.refresh_from_db()
                done = Judgment.objects.filter(run=run).count()
                if not killed and done >= n * 0.3:
                    workers[0].send_signal(signal.SIGKILL)
                    workers[0].wait()
                    killed_at = done
                    killed = True
                    workers[0] = start_worker("w1b")  # a replacement, as a supervisor would start
                if not run.is_active:
                    break
                if time.perf_counter() - started > 900:
                    raise SystemExit(f"run not finished after 900 s: {done}/{n}")
                time.sleep(0.5)
            elapsed = time.perf_counter() - started
            judgments = Judgment.objects.filter(run=run)
            total = judgments.count()
            distinct = judgments.values("item_id").distinct().count()
            dupes = judgments.values("item_id").annotate(c=Count("id")).filter(c__gt=1).count()
            kinds = dict(judgments.values_list("error_kind").annotate(c=Count("id")).values_list("error_kind", "c"))
            print("| items | judgments | distinct items | duplicates | ok | errors by kind | killed at | wall s |")
            print("|---:|---:|---:|---:|---:|---|---:|---:|")
            print(f"| {n} | {total} | {distinct} | {dupes} | {kinds.pop('', 0)} | {kinds} | {killed_at} | {elapsed:.0f} |")
            assert total == distinct == n and dupes == 0, "lost or duplicated judgments"
    finally:
        for w in workers:
            w.kill()
        subprocess.run(["redis-cli", "-p", str(redis_port), "shutdown", "nosave"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "throughput"
    if mode == "throughput":
        throughput({1: 25, 16: 320, 64: 1280})
    elif mode == "faults":
        faults(int(sys.argv[2]) if len(sys.argv) > 2 else 5000)
    else:
        raise SystemExit("usage: judge_runs.py throughput|faults [items]")
