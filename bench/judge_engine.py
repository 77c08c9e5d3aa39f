"""Judge engine throughput against the fault-free fault server, and our per-judgment overhead.

    .venv/bin/python bench/judge_engine.py [--latency-ms 200] [--waves 20]

The fault server runs in its own process so the client under test has the interpreter to itself.
Throughput is judgments/s through the endpoint client (--client direct|sdk), the engine and
parsing; the ideal is concurrency / latency. Overhead is the median wall time of building a prompt + request and parsing
an answer (what we add per judgment besides the HTTP call), and the client process's CPU time per
judgment at each concurrency (HTTP client, engine, parse), which bounds throughput on a small box.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from judges.core.engine import run_requests_sync  # noqa: E402
from judges.core.openai_backend import CLIENTS, OpenAIBackend  # noqa: E402
from judges.core.prompt import build_request  # noqa: E402
from judges.core.schema import parse_judgment  # noqa: E402
from judges.core.types import JudgeConfig, JudgeItem, PrecedentExample  # noqa: E402
from policy.rubric import parse_rubric, trec_relevance_dimension  # noqa: E402

POLICY = ("Judge whether the passage answers the query. " * 40).strip()
RUBRIC = parse_rubric({"dimensions": [
    trec_relevance_dimension(),
    {"key": "freshness", "name": "Freshness", "description": "Is it current?",
     "levels": [{"value": v, "label": f"L{v}", "definition": f"Level {v}."} for v in range(3)]},
    {"key": "safety", "name": "Safety", "description": "Is it safe to show?",
     "levels": [{"value": v, "label": f"S{v}", "definition": f"Safety level {v}."} for v in range(2)]},
]})
PRECEDENTS = [
    PrecedentExample(query=f"precedent query {n}", title=f"Precedent {n}", body="A precedent passage. " * 60,
                     labels={"relevance": n % 4, "freshness": 1, "safety": 1},
                     rationale="Because the policy says so. " * 5, clause=f"clause-{n}")
    for n in range(4)
]


def item(n: int) -> JudgeItem:
    # A realistic document: longer than the 4,000-character budget, so truncation runs too.
    return JudgeItem(n, f"how tall is mount everest {n}", "Mount Everest - Wikipedia",
                     ("Mount Everest is Earth's highest mountain above sea level. " * 80), f"https://example.com/{n}")


def start_server(latency_ms: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "judges.testing.fault_server", "--port", "0",
                             "--latency-ms", str(latency_ms)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"fault server did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[1].strip()


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of another process (Linux /proc), to see the server's share."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def throughput(base_url: str, concurrency: int, n: int, latency_s: float, server_pid: int,
               client: str) -> dict[str, float]:
    config = JudgeConfig(model="fault-model", temperature=0, max_tokens=200, concurrency=concurrency,
                         timeout_s=30)
    requests = [build_request(POLICY, RUBRIC, PRECEDENTS, item(i), config) for i in range(n)]
    outcomes, done_at = [], []

    def on_outcome(outcome):
        outcomes.append(outcome)
        done_at.append(time.perf_counter())

    server0 = process_cpu_s(server_pid)
    cpu0, t0 = time.process_time(), time.perf_counter()
    run_requests_sync(OpenAIBackend(base_url, client=client), requests, config, on_outcome=on_outcome)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    server_cpu = process_cpu_s(server_pid) - server0
    errors = sum(not o.ok for o in outcomes)
    if len(outcomes) != n or errors:
        raise SystemExit(f"c={concurrency}: {len(outcomes)} outcomes, {errors} errors")
    rate = n / elapsed
    # Steady state: after the first wave, so the one-off start (event loop, client, connections)
    # is left out.
    steady = (n - concurrency) / (done_at[-1] - done_at[concurrency - 1])
    ideal = concurrency / latency_s
    latencies = sorted(o.latency_ms for o in outcomes)
    return {"c": concurrency, "n": n, "elapsed": elapsed, "rate": rate, "ideal": ideal, "ratio": rate / ideal,
            "steady": steady / ideal, "first_ms": (done_at[0] - t0) * 1000,
            "cpu_ms": cpu * 1000 / n, "server_cpu_ms": server_cpu * 1000 / n, "p50": latencies[len(latencies) // 2],
            "p95": latencies[int(len(latencies) * 0.95) - 1]}


def overhead(samples: int) -> tuple[float, float]:
    config = JudgeConfig(model="m", temperature=0, max_tokens=200)
    raw = json.dumps({"rationale": "It answers the query directly. " * 10, "relevance": 3, "freshness": 2,
                      "safety": 1})
    build, parse = [], []
    for i in range(samples):
        t0 = time.perf_counter()
        build_request(POLICY, RUBRIC, PRECEDENTS, item(i), config)
        t1 = time.perf_counter()
        parse_judgment(raw, RUBRIC, rationale_max_chars=600)
        t2 = time.perf_counter()
        build.append((t1 - t0) * 1000)
        parse.append((t2 - t1) * 1000)
    return statistics.median(build), statistics.median(parse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--waves", type=int, default=40, help="items per run = concurrency x waves")
    parser.add_argument("--overhead-samples", type=int, default=2000)
    parser.add_argument("--client", choices=CLIENTS, default=CLIENTS[0], help="the endpoint client under test")
    args = parser.parse_args()
    latency_s = args.latency_ms / 1000
    # Other work on a small machine shows up directly in the figures; say how busy it was.
    load_before = "/".join(f"{x:.2f}" for x in os.getloadavg())

    proc, base_url = start_server(args.latency_ms)
    try:
        rows = [throughput(base_url, c, c * args.waves, latency_s, proc.pid, args.client) for c in (1, 16, 64)]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    build_ms, parse_ms = overhead(args.overhead_samples)

    load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average before the run {load_before}, after {load}; fault server at {args.latency_ms:g} ms "
          f"latency, 0 faults, in a separate process; client {args.client}\n")
    print("| concurrency | items | seconds | judgments/s | ideal/s | % of ideal | steady-state % of ideal "
          "| first answer ms | p50 ms | p95 ms | client CPU ms/judgment | server CPU ms/judgment |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['c']} | {r['n']} | {r['elapsed']:.2f} | {r['rate']:.1f} | {r['ideal']:.0f} | "
              f"{r['ratio'] * 100:.1f}% | {r['steady'] * 100:.1f}% | {r['first_ms']:.0f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['cpu_ms']:.2f} | "
              f"{r['server_cpu_ms']:.2f} |")
    print(f"\nper-judgment overhead (median of {args.overhead_samples}): prompt build {build_ms:.3f} ms, "
          f"parse {parse_ms:.3f} ms, total {build_ms + parse_ms:.3f} ms")


if __name__ == "__main__":
    main()
