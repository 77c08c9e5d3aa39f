"""Rate limits: per process, and shared across processes through a real Redis server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from judges.core.ratelimit import (
    LocalRateLimiter,
    NullRateLimiter,
    RedisRateLimiter,
    ideal_wait,
    make_rate_limiter,
)

from .conftest import make_config

ROOT = Path(__file__).resolve().parents[2]


async def timed_acquires(limiter, costs: list[int]) -> list[float]:
    start = time.monotonic()
    stamps = []
    for cost in costs:
        await limiter.acquire(cost)
        stamps.append(time.monotonic() - start)
    return stamps


def test_requests_per_minute_allow_a_one_second_burst_then_the_steady_rate():
    limiter = LocalRateLimiter(requests_per_minute=1200)  # 20/s, a burst of 20
    stamps = asyncio.run(timed_acquires(limiter, [1] * 40))
    assert stamps[19] < 0.05  # the burst
    assert stamps[-1] == pytest.approx(ideal_wait(1200, 40), abs=0.15)  # 20 more at 20/s: 1 s


def test_tokens_per_minute_limit_by_the_tokens_each_request_costs():
    limiter = LocalRateLimiter(tokens_per_minute=120_000)  # 2,000 tokens/s
    stamps = asyncio.run(timed_acquires(limiter, [1000] * 4))
    assert stamps[1] < 0.05
    assert stamps[-1] == pytest.approx(1.0, abs=0.15)


def test_a_request_bigger_than_the_bucket_goes_through_and_is_paid_back():
    limiter = LocalRateLimiter(tokens_per_minute=120_000)  # bucket of 2,000
    stamps = asyncio.run(timed_acquires(limiter, [5000, 1]))
    assert stamps[0] < 0.05  # not stuck forever
    assert stamps[1] == pytest.approx(1.5, abs=0.15)  # the 3,000-token debt, then 1 token, at 2,000/s


def test_concurrent_waiters_are_all_served():
    limiter = LocalRateLimiter(requests_per_minute=1200)

    async def main():
        start = time.monotonic()
        await asyncio.gather(*(limiter.acquire(1) for _ in range(40)))
        return time.monotonic() - start

    assert asyncio.run(main()) == pytest.approx(1.0, abs=0.15)


def test_make_rate_limiter_picks_none_local_or_redis():
    assert isinstance(make_rate_limiter(make_config()), NullRateLimiter)
    assert isinstance(make_rate_limiter(make_config(requests_per_minute=60)), LocalRateLimiter)
    assert isinstance(make_rate_limiter(make_config(tokens_per_minute=60), redis_url="redis://127.0.0.1:1/0"),
                      RedisRateLimiter)


def test_the_redis_limiter_enforces_the_rate(redis_url):
    async def main():
        limiter = RedisRateLimiter(redis_url, "test:rate:single", requests_per_minute=1200)
        try:
            return await timed_acquires(limiter, [1] * 40)
        finally:
            await limiter.aclose()

    stamps = asyncio.run(main())
    assert stamps[19] < 0.1
    assert stamps[-1] == pytest.approx(1.0, abs=0.2)


def test_the_redis_limiter_charges_tokens_and_expires_its_key(redis_url):
    import redis

    async def main():
        limiter = RedisRateLimiter(redis_url, "test:rate:tokens", tokens_per_minute=120_000)
        try:
            return await timed_acquires(limiter, [1000] * 4)
        finally:
            await limiter.aclose()

    stamps = asyncio.run(main())
    assert stamps[-1] == pytest.approx(1.0, abs=0.2)
    ttl = redis.Redis.from_url(redis_url).pttl("test:rate:tokens")
    assert 0 < ttl <= 5000


WORKER = """
import asyncio, json, sys, time
from judges.core.ratelimit import RedisRateLimiter
async def main():
    limiter = RedisRateLimiter(sys.argv[1], sys.argv[2], requests_per_minute=1200)
    stamps = []
    for _ in range(30):
        await limiter.acquire(1)
        stamps.append(time.time())
    await limiter.aclose()
    print(json.dumps(stamps))
asyncio.run(main())
"""


def test_the_redis_limit_holds_across_worker_processes(redis_url):
    key = f"test:rate:shared:{time.time_ns()}"
    # Two real processes: nothing is shared but Redis.
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, redis_url, key], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    stamps = sorted(s for p in procs for s in json.loads(p.communicate(timeout=30)[0]))
    assert all(p.returncode == 0 for p in procs)
    # 60 grants at 20/s after a burst of 20 take 2 s; either process alone would have taken 0.5 s.
    assert stamps[-1] - stamps[0] >= 1.85
    # And no one-second window ever holds more than the burst plus one second of refill.
    window_max = max(sum(1 for s in stamps if t <= s < t + 1.0) for t in stamps)
    assert window_max <= 20 + 20 + 1
