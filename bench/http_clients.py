"""Benchmark: HTTP clients alone on one event loop, as the judge's engine thread runs them.

    .venv/bin/python bench/http_clients.py [--runs 3] [--requests 1280] [--concurrency 64]

No engine, no prompts, no database: --requests chat-completion POSTs (a ~3.5 kB body with a JSON
schema) at --concurrency against the fault-free fault server at 200 ms (its own process), through
  aiohttp              one ClientSession, as the judges' `direct` client posts;
  aiohttp trust_env    the same session with trust_env=True (the proxy environment read per request);
  openai SDK           AsyncOpenAI.post on its aiohttp transport, as the `sdk` client posts.
Each run takes the three in turn; prints % of ideal (concurrency / latency) and the process's CPU per
request, then medians. What the engine or the chunk path add comes on top (bench/judge_engine.py,
bench/judge_runs.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.judge_runs import start_fault_server  # noqa: E402

BODY = {
    "model": "bench", "temperature": 0, "max_tokens": 200,
    "messages": [{"role": "system", "content": "x" * 2000}, {"role": "user", "content": "query: q\n" + "d" * 1500}],
    "response_format": {"type": "json_schema", "json_schema": {"name": "judgment", "schema": {
        "type": "object", "properties": {"relevance": {"type": "integer"}, "rationale": {"type": "string"}},
        "required": ["relevance", "rationale"]}}},
}


async def with_aiohttp(base_url: str, n: int, concurrency: int, *, trust_env: bool) -> None:
    import aiohttp

    limit = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(trust_env=trust_env, connector=aiohttp.TCPConnector(limit=0)) as session:
        async def one() -> None:
            async with limit, session.post(f"{base_url}/chat/completions", data=json.dumps(BODY).encode(),
                                           timeout=aiohttp.ClientTimeout(total=60)) as response:
                json.loads(await response.read())

        await asyncio.gather(*(one() for _ in range(n)))


async def with_sdk(base_url: str, n: int, concurrency: int) -> None:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0,
                                http_client=openai.DefaultAioHttpClient())
    limit = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with limit:
            await client.post("/chat/completions", cast_to=object, body=BODY,
                              options={"timeout": 60, "idempotency_key": f"bench-{i}"})

    try:
        await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1280)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    n, c = args.requests, args.concurrency
    ideal_s = n / (c / 0.2)
    clients = {
        "aiohttp": lambda url: with_aiohttp(url, n, c, trust_env=False),
        "aiohttp trust_env": lambda url: with_aiohttp(url, n, c, trust_env=True),
        "openai SDK": lambda url: with_sdk(url, n, c),
    }
    load_before = "/".join(f"{x:.2f}" for x in os.getloadavg())
    server, base_url = start_fault_server()
    ratios: dict[str, list[float]] = {name: [] for name in clients}
    cpu: dict[str, list[float]] = {name: [] for name in clients}
    print(f"{n} requests at c={c}, fault server at 200 ms; load average before {load_before}\n")
    print("| client | % of ideal | CPU ms/request |")
    print("|---|---:|---:|")
    try:
        for _ in range(args.runs):
            for name, run in clients.items():
                cpu_start, start = time.process_time(), time.perf_counter()
                asyncio.run(run(base_url))
                wall, used = time.perf_counter() - start, time.process_time() - cpu_start
                ratios[name].append(100 * ideal_s / wall)
                cpu[name].append(1000 * used / n)
                print(f"| {name} | {ratios[name][-1]:.1f}% | {cpu[name][-1]:.2f} |", flush=True)
    finally:
        server.terminate()
    print("\nmedians: " + ", ".join(f"{name} {statistics.median(ratios[name]):.1f}% "
                                    f"({statistics.median(cpu[name]):.2f} ms CPU/request)" for name in clients))
    print(f"load average after {'/'.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
