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


async def run_requests(
    backend: JudgeBackend,
    requests: Iterable[JudgeRequest],
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
    An exception raised by `on_outcome` is a caller bug and propagates.
    """
    limiter = limiter or NullRateLimiter()
    rng = rng or random.Random()
    units = _chunks(requests, max(1, backend.max_batch_size))
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

    async def worker() -> None:
        while not await should_stop():
            unit = next(units, None)
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
    **engine_kwargs: Any,
) -> None:
    """`run_requests` for synchronous callers such as a Celery task.

    The event loop (asyncio.run) runs on a helper thread while `on_outcome` and `cancel_check` run
    here, on the caller's thread. That is what a Django caller needs: the ORM refuses to run inside
    an event loop, and a slow DB write must not stall the HTTP calls in flight. `requests` is
    consumed on the helper thread, so pass a list rather than a lazy queryset.
    """
    outcomes: queue.SimpleQueue[Any] = queue.SimpleQueue()
    stop = threading.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        try:
            await run_requests(backend, requests, config, limiter, outcomes.put, stop.is_set, **engine_kwargs)
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

    thread = threading.Thread(target=loop_thread, name="judge-engine", daemon=True)
    thread.start()
    last_poll = -float("inf")
    try:
        while True:
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
    except BaseException:
        stop.set()  # let requests in flight finish, then surface the caller's error
        thread.join()
        raise
    thread.join()
    if failure:
        raise failure[0]
