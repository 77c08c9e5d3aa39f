"""Requests/minute and tokens/minute limits: per process (asyncio) or across every worker (Redis).

Both limiters are token buckets that refill continuously at limit/60 per second.

- Capacity is `burst_s` seconds of refill (default 1 s), not a whole minute: providers enforce their
  per-minute limits over shorter windows (OpenAI documents 60,000 RPM being enforced as 1,000 per
  second), so a minute-sized burst would turn into 429s.
- A token cost larger than the capacity is granted once the bucket is full and drives it negative
  (debt), so a long prompt neither waits forever nor escapes the long-run tokens/minute limit.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from typing import Protocol

from .types import JudgeConfig

DEFAULT_BURST_S = 1.0


class RateLimiter(Protocol):
    async def acquire(self, tokens: int) -> None:
        """Wait until one request costing `tokens` may start."""


class NullRateLimiter:
    """No configured limit."""

    async def acquire(self, tokens: int) -> None:
        return None


def _capacity(per_minute: int | None, burst_s: float) -> float:
    if not per_minute:
        return 0.0
    return max(1.0, per_minute * burst_s / 60)


class _Bucket:
    """A continuously refilling bucket that may go into debt (see module docstring)."""

    def __init__(self, per_minute: int, burst_s: float, now: float) -> None:
        self.rate = per_minute / 60
        self.capacity = _capacity(per_minute, burst_s)
        self.level = self.capacity
        self.updated = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_for(self, cost: float) -> float:
        need = min(cost, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate


class LocalRateLimiter:
    """Per-process limiter for when no Redis is configured (tests, a single worker, the CLI)."""

    def __init__(self, requests_per_minute: int | None = None, tokens_per_minute: int | None = None,
                 *, burst_s: float = DEFAULT_BURST_S) -> None:
        now = time.monotonic()
        self._requests = _Bucket(requests_per_minute, burst_s, now) if requests_per_minute else None
        self._tokens = _Bucket(tokens_per_minute, burst_s, now) if tokens_per_minute else None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    def _get_lock(self) -> asyncio.Lock:
        # Waiters queue on the lock, which makes the limiter FIFO: no coroutine starves.
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def acquire(self, tokens: int) -> None:
        async with self._get_lock():
            while True:
                now = time.monotonic()
                wait = 0.0
                for bucket, cost in ((self._requests, 1), (self._tokens, tokens)):
                    if bucket is not None:
                        bucket.refill(now)
                        wait = max(wait, bucket.wait_for(cost))
                if wait <= 0:
                    if self._requests is not None:
                        self._requests.level -= 1
                    if self._tokens is not None:
                        self._tokens.level -= tokens
                    return
                await asyncio.sleep(wait)


# Atomic check-and-take on both buckets, stored in one hash. Redis's own clock is used so that workers
# with skewed clocks agree. Returns 0 when granted, else the milliseconds to wait before asking again.
# Scripts are replicated by effects in Redis >= 5, which makes calling TIME before a write allowed.
_ACQUIRE_LUA = """
local key = KEYS[1]
local r_rate = tonumber(ARGV[1])
local r_cap = tonumber(ARGV[2])
local t_rate = tonumber(ARGV[3])
local t_cap = tonumber(ARGV[4])
local cost = tonumber(ARGV[5])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', key, 'r', 'rt', 't', 'tt')

local function level(stored, stamp, rate, cap)
  if stored == false or stored == nil then return cap end
  return math.min(cap, tonumber(stored) + (now - tonumber(stamp)) * rate)
end

local wait = 0
local r_level = 0
local t_level = 0
if r_rate > 0 then
  r_level = level(state[1], state[2], r_rate, r_cap)
  if r_level < 1 then wait = math.max(wait, (1 - r_level) / r_rate) end
end
if t_rate > 0 then
  t_level = level(state[3], state[4], t_rate, t_cap)
  local need = math.min(cost, t_cap)
  if t_level < need then wait = math.max(wait, (need - t_level) / t_rate) end
end
if wait > 0 then
  return math.max(1, math.ceil(wait * 1000))
end
local ttl = 1
if r_rate > 0 then
  redis.call('HSET', key, 'r', string.format('%.6f', r_level - 1), 'rt', string.format('%.6f', now))
  ttl = math.max(ttl, r_cap / r_rate)
end
if t_rate > 0 then
  redis.call('HSET', key, 't', string.format('%.6f', t_level - cost), 'tt', string.format('%.6f', now))
  ttl = math.max(ttl, (t_cap + cost) / t_rate)
end
-- An idle limiter's bucket is full again after ttl; letting the key expire then loses nothing.
redis.call('PEXPIRE', key, math.ceil(ttl * 1000) + 1000)
return 0
"""


class RedisRateLimiter:
    """Limits that hold across all worker processes sharing `key` (one key per endpoint and model:
    that is the unit providers rate-limit)."""

    def __init__(self, redis_url: str, key: str, requests_per_minute: int | None = None,
                 tokens_per_minute: int | None = None, *, burst_s: float = DEFAULT_BURST_S) -> None:
        self.redis_url = redis_url
        self.key = key
        self._args = [
            (requests_per_minute or 0) / 60, _capacity(requests_per_minute, burst_s),
            (tokens_per_minute or 0) / 60, _capacity(tokens_per_minute, burst_s),
        ]
        self._unlimited = not requests_per_minute and not tokens_per_minute
        self._loop: asyncio.AbstractEventLoop | None = None
        self._redis = None
        self._script = None
        self._lock: asyncio.Lock | None = None

    def _bind(self) -> None:
        # redis.asyncio connections belong to one event loop, like the OpenAI client's.
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            import redis.asyncio as aioredis

            self._redis = aioredis.Redis.from_url(self.redis_url)
            self._script = self._redis.register_script(_ACQUIRE_LUA)
            self._lock = asyncio.Lock()
            self._loop = loop

    async def acquire(self, tokens: int) -> None:
        if self._unlimited:
            return
        self._bind()
        assert self._lock is not None and self._script is not None
        # One coroutine per process asks Redis at a time: FIFO within the process, and Redis sees
        # one poller per worker instead of one per in-flight request.
        async with self._lock:
            while True:
                wait_ms = int(await self._script(keys=[self.key], args=[*self._args, max(0, int(tokens))]))
                if wait_ms <= 0:
                    return
                # Jitter so workers that were refused together do not all ask again together.
                await asyncio.sleep(wait_ms / 1000 * (1 + random.random() * 0.1))

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
            self._loop = None


def make_rate_limiter(config: JudgeConfig, *, redis_url: str | None = None, key: str = "sage:judge:ratelimit",
                      burst_s: float = DEFAULT_BURST_S) -> RateLimiter:
    """The limiter a run should use: none, per process, or shared through Redis."""
    if not config.requests_per_minute and not config.tokens_per_minute:
        return NullRateLimiter()
    if redis_url:
        return RedisRateLimiter(redis_url, key, config.requests_per_minute, config.tokens_per_minute,
                                burst_s=burst_s)
    return LocalRateLimiter(config.requests_per_minute, config.tokens_per_minute, burst_s=burst_s)


def ideal_wait(per_minute: int, count: int, burst_s: float = DEFAULT_BURST_S) -> float:
    """Seconds `count` grants take at `per_minute` after the initial burst; a test and doc helper."""
    return max(0.0, (count - math.floor(_capacity(per_minute, burst_s))) * 60 / per_minute)
