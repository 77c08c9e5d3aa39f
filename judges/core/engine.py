"""Run many judge requests concurrently, retrying provider faults, recording every outcome.

Guarantees the models layer builds on:

- every request that is started yields exactly one outcome through `on_outcome` (labels or a
  recorded error); one item's failure never fails the batch;
- transient faults are retried with exponential backoff and full jitter, never sooner than a
  provider's Retry-After; permanent faults are recorded at once;
- after `cancel_check()` turns true no new request starts; requests in flight finish and report.

Timeouts are enforced by the backend (the OpenAI client's per-request timeout); the engine does not
add its own, because time spent waiting on the rate limiter would count against it.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import itertools
import logging
import queue
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from .backends import JudgeBackend, PermanentError, TransientError, error_outcome
from .prompt import prompt_text
from .ratelimit import NullRateLimiter, RateLimiter
from .types import JudgeConfig, JudgeOutcome, JudgeRequest

logger = logging.getLogger(__name__)

OnOutcome = Callable[[JudgeOutcome], Awaitable[None] | None]
CancelCheck = Callable[[], Awaitable[bool] | bool]

# A Retry-After of hours would park a worker; past this we retry anyway and let the provider refuse.
MAX_RETRY_AFTER_S = 300.0


def backoff_delay(attempt: int, *, base_s: float, cap_s: float, retry_after: float | None,
                  rng: random.Random) -> float:
    """Seconds before retry number `attempt` (1-based).

    Full jitter (uniform in [0, min(cap, base * 2^(attempt-1))]) spreads retries of many workers
    that failed together. With a Retry-After we wait at least that long, plus a little jitter so
    the retries do not land in the same instant.
    """
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER_S) + rng.uniform(0, base_s)
    return rng.uniform(0, min(cap_s, base_s * 2 ** (attempt - 1)))


def _chunks(requests: Iterable[JudgeRequest], size: int) -> Iterator[list[JudgeRequest]]:
    it = iter(requests)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class RequestFeed:
    """Units of requests handed from a producer thread to the engine's event loop while it runs.

    `run_requests_sync` builds requests on the caller's thread and feeds them in as they are made,
    so the first calls go out (and their connections open) while the rest of a chunk is still being
    loaded and prompted, instead of after. `put` and `close` may be called from any thread; `get`
    runs on the loop. A deque plus one wake-up per `put` (not per unit): appends are atomic, and
    the loop checks the deque before it waits, so a unit put before the loop attached is not missed.
    """

    def __init__(self) -> None:
        self._units: collections.deque[list[JudgeRequest]] = collections.deque()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None

    def backlog(self) -> int:
        """Units put and not yet taken by a worker."""
        return len(self._units)

    def put(self, units: list[list[JudgeRequest]]) -> None:
        if units:
            self._units.extend(units)
            self._wake()

    def close(self, *, drop: bool = False) -> None:
        """No more units; with `drop`, the ones not taken yet are discarded (a cancel)."""
        self._closed = True
        if drop:
            self._units.clear()
        self._wake()

    def _wake(self) -> None:
        loop = self._loop
        if loop is not None and self._ready is not None:
            try:
                loop.call_soon_threadsafe(self._ready.set)
            except RuntimeError:  # the loop has closed: nobody is waiting any more
                pass

    async def get(self) -> list[JudgeRequest] | None:
        """The next unit, waiting for the producer; None once closed and drained."""
        if self._loop is None:
            self._ready = asyncio.Event()
            self._loop = asyncio.get_running_loop()
        assert self._ready is not None
        while True:
            if self._units:
                try:
                    return self._units.popleft()
                except IndexError:  # a concurrent close(drop=True)
                    pass
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()


async def run_requests(
    backend: JudgeBackend,
    requests: Iterable[JudgeRequest] | RequestFeed,
    config: JudgeConfig,
    limiter: RateLimiter | None = None,
    on_outcome: OnOutcome | None = None,
    cancel_check: CancelCheck | None = None,
    *,
    backoff_base_s: float = 0.5,
    backoff_cap_s: float = 30.0,
    cancel_poll_s: float = 0.0,
    rng: random.Random | None = None,
) -> None:
    """Judge `requests` with up to `config.concurrency` calls in flight.

    `on_outcome` and `cancel_check` may be plain or async callables; they run on the event loop, so
    a Django caller should use `run_requests_sync`, which calls them on the caller's thread.
    `cancel_poll_s` throttles `cancel_check` when it is expensive (0: before every item).
    `requests` may be a `RequestFeed` a producer fills while the engine runs (already in units of
    the backend's batch size). An exception raised by `on_outcome` is a caller bug and propagates.
    """
    limiter = limiter or NullRateLimiter()
    rng = rng or random.Random()
    feed = requests if isinstance(requests, RequestFeed) else None
    units = None if feed is not None else _chunks(requests, max(1, backend.max_batch_size))
    cancelled = False
    last_poll = -float("inf")

    async def should_stop() -> bool:
        nonlocal cancelled, last_poll
        if cancelled or cancel_check is None:
            return cancelled
        now = time.monotonic()
        if now - last_poll >= cancel_poll_s:
            last_poll = now
            cancelled = bool(await _maybe_await(cancel_check()))
        return cancelled

    async def judge_unit(unit: list[JudgeRequest]) -> list[JudgeOutcome]:
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                outcomes = await backend.judge_batch(unit, config, acquire=limiter.acquire)
                if len(outcomes) != len(unit):
                    raise RuntimeError(f"{backend.name} returned {len(outcomes)} outcomes for {len(unit)} requests")
                return [replace(o, attempts=attempt) for o in outcomes]
            except TransientError as exc:
                error: TransientError = exc
            except PermanentError as exc:
                return _errors(unit, exc.kind, str(exc), attempt, started)
            except Exception as exc:  # a bug in a backend must cost one item, not the run
                logger.exception("judge backend %s failed on items %s", backend.name, [r.item_id for r in unit])
                return _errors(unit, "internal_error", f"{type(exc).__name__}: {exc}", attempt, started)
            if attempt > config.max_retries:
                return _errors(unit, error.kind, f"{error} (gave up after {attempt} attempts)", attempt, started)
            delay = backoff_delay(attempt, base_s=backoff_base_s, cap_s=backoff_cap_s,
                                  retry_after=error.retry_after, rng=rng)
            logger.info("items %s: %s (%s); retry %d in %.2fs", [r.item_id for r in unit], error.kind, error,
                        attempt, delay)
            await asyncio.sleep(delay)

    async def next_unit() -> list[JudgeRequest] | None:
        if feed is not None:
            return await feed.get()
        assert units is not None
        return next(units, None)

    async def worker() -> None:
        while not await should_stop():
            unit = await next_unit()
            if unit is None:
                return
            for outcome in await judge_unit(unit):
                if on_outcome is not None:
                    await _maybe_await(on_outcome(outcome))

    # A fixed pool of workers pulling from one iterator, rather than a task per request: memory stays
    # flat for a chunk of any size and `requests` may be a lazy generator. gather (not a TaskGroup)
    # so a caller's exception surfaces as itself rather than wrapped in an ExceptionGroup.
    workers = [asyncio.create_task(worker()) for _ in range(config.concurrency)]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


def _errors(unit: Sequence[JudgeRequest], kind: str, message: str, attempts: int, started: float) -> list[JudgeOutcome]:
    latency_ms = (time.perf_counter() - started) * 1000
    return [
        error_outcome(r, kind=kind, message=message, prompt=prompt_text(r.messages), attempts=attempts,
                      latency_ms=latency_ms)
        for r in unit
    ]


_DONE = object()


def run_requests_sync(
    backend: JudgeBackend,
    requests: Iterable[JudgeRequest],
    config: JudgeConfig,
    limiter: RateLimiter | None = None,
    on_outcome: Callable[[JudgeOutcome], None] | None = None,
    cancel_check: Callable[[], bool] | None = None,
    *,
    cancel_poll_s: float = 0.5,
    lookahead: int | None = None,
    **engine_kwargs: Any,
) -> None:
    """`run_requests` for synchronous callers such as a Celery task.

    The event loop (asyncio.run) runs on a helper thread while `on_outcome` and `cancel_check` run
    here, on the caller's thread. That is what a Django caller needs: the ORM refuses to run inside
    an event loop, and a slow DB write must not stall the HTTP calls in flight.

    `requests` is consumed here too, lazily, and fed to the loop as it goes: a generator that loads
    and builds prompts (with the ORM) overlaps with the first calls instead of delaying them. It is
    kept `lookahead` units ahead of the workers (default: two per concurrent call), so the workers
    never starve and a cancel leaves few requests built for nothing.
    """
    outcomes: queue.SimpleQueue[Any] = queue.SimpleQueue()
    stop = threading.Event()
    failure: list[BaseException] = []
    feed = RequestFeed()
    batch = max(1, backend.max_batch_size)
    ahead = lookahead if lookahead is not None else 2 * max(1, config.concurrency)
    step = max(1, ahead // 8)
    source = _chunks(requests, batch)

    async def main() -> None:
        try:
            warm = getattr(backend, "warm", None)  # a backend with costly set-up does it while the feed fills
            if warm is not None:
                await warm()
            await run_requests(backend, feed, config, limiter, outcomes.put, stop.is_set, **engine_kwargs)
        finally:
            await backend.aclose()
            close = getattr(limiter, "aclose", None)
            if close is not None:
                await close()

    def loop_thread() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # re-raised on the caller's thread
            failure.append(exc)
        finally:
            outcomes.put(_DONE)

    def top_up() -> bool:
        """Feed units until `ahead` wait; False once `requests` is exhausted (the feed is closed)."""
        units = []
        while feed.backlog() + len(units) < ahead:
            unit = next(source, None)
            if unit is None:
                feed.put(units)
                feed.close()
                return False
            units.append(unit)
            # Hand over in small groups: idle workers start on the first ones while the rest are built.
            if feed.backlog() == 0 or len(units) >= step:
                feed.put(units)
                units = []
        feed.put(units)
        return True

    thread = threading.Thread(target=loop_thread, name="judge-engine", daemon=True)
    thread.start()
    producing = True
    last_poll = -float("inf")
    try:
        while True:
            if producing and not stop.is_set():
                producing = top_up()
            try:
                item = outcomes.get(timeout=0.1)  # wake up now and then to poll cancel_check
            except queue.Empty:
                item = None
            if item is _DONE:
                break
            if item is not None and on_outcome is not None:
                on_outcome(item)
            if cancel_check is not None and not stop.is_set() and time.monotonic() - last_poll >= cancel_poll_s:
                last_poll = time.monotonic()
                if cancel_check():
                    stop.set()
                    feed.close(drop=True)
    except BaseException:
        stop.set()  # let requests in flight finish, then surface the caller's error
        feed.close(drop=True)
        thread.join()
        raise
    thread.join()
    if failure:
        raise failure[0]
