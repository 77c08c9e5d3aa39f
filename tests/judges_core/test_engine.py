"""The engine's own behaviour: concurrency, cancellation, isolation of failures, backoff, batching."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from judges.core.backends import JudgeBackend, PermanentError, TransientError
from judges.core.engine import backoff_delay, run_requests, run_requests_sync
from judges.core.openai_backend import OpenAIBackend
from judges.core.types import JudgeOutcome
from judges.testing.fault_server import running_fault_server

from .conftest import make_config, make_requests


def ok(request, **extra) -> JudgeOutcome:
    return JudgeOutcome(item_id=request.item_id, labels={"relevance": 1, "freshness": 1}, rationale="r",
                        raw_response="{}", prompt="p", tokens_in=1, tokens_out=1, latency_ms=1.0, attempts=1,
                        error_kind=None, error_message="", **extra)


class ScriptedBackend(JudgeBackend):
    """Behaviour per item id: a list of exceptions to raise before answering."""

    name = "scripted"

    def __init__(self, faults=None, delay=0.0):
        self.faults = {k: list(v) for k, v in (faults or {}).items()}
        self.delay = delay
        self.started: list[int] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def judge(self, request, config, *, acquire=None):
        self.started.append(request.item_id)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            pending = self.faults.get(request.item_id)
            if pending:
                raise pending.pop(0)
            return ok(request)
        finally:
            self.in_flight -= 1


def run(backend, n, **kwargs):
    config = kwargs.pop("config", None) or make_config(concurrency=kwargs.pop("concurrency", 4))
    outcomes = []
    asyncio.run(run_requests(backend, make_requests(n, config), config, on_outcome=outcomes.append,
                             backoff_base_s=0.001, **kwargs))
    return outcomes


def test_requests_really_run_concurrently_against_a_slow_server():
    config = make_config(concurrency=16)
    outcomes = []
    with running_fault_server(latency_ms=200) as server:
        started = time.perf_counter()
        run_requests_sync(OpenAIBackend(server.base_url), make_requests(32, config), config,
                          on_outcome=outcomes.append)
        elapsed = time.perf_counter() - started
        assert server.stats()["max_in_flight"] == 16
    assert len(outcomes) == 32 and all(o.ok for o in outcomes)
    assert elapsed < 2.5  # two waves of 200 ms (plus connection set-up), against 6.4 s one at a time


def test_concurrency_is_capped_by_the_config():
    backend = ScriptedBackend(delay=0.01)
    run(backend, 40, concurrency=5)
    assert backend.max_in_flight == 5


def test_one_items_permanent_error_does_not_fail_the_others():
    backend = ScriptedBackend({2: [PermanentError("HTTP 401: bad key")]})
    outcomes = {o.item_id: o for o in run(backend, 5)}
    assert outcomes[2].error_kind == "permanent" and outcomes[2].attempts == 1
    assert "401" in outcomes[2].error_message
    assert all(outcomes[i].ok for i in (1, 3, 4, 5))


def test_a_bug_in_a_backend_is_recorded_on_that_item():
    backend = ScriptedBackend({3: [KeyError("choices")]})
    outcomes = {o.item_id: o for o in run(backend, 4)}
    assert outcomes[3].error_kind == "internal_error"
    assert "KeyError" in outcomes[3].error_message
    assert sum(o.ok for o in outcomes.values()) == 3


def test_transient_errors_are_retried_up_to_max_retries():
    backend = ScriptedBackend({1: [TransientError("boom")] * 2, 2: [TransientError("boom", kind="timeout")] * 10})
    config = make_config(max_retries=3)
    outcomes = {o.item_id: o for o in run(backend, 2, config=config)}
    assert outcomes[1].ok and outcomes[1].attempts == 3
    assert outcomes[2].error_kind == "timeout" and outcomes[2].attempts == 4
    assert backend.started.count(2) == 4


def test_cancellation_stops_new_items_and_lets_in_flight_ones_finish():
    backend = ScriptedBackend(delay=0.005)
    seen = []

    def on_outcome(outcome):
        seen.append(outcome)

    config = make_config(concurrency=3)
    asyncio.run(run_requests(backend, make_requests(200, config), config, on_outcome=on_outcome,
                             cancel_check=lambda: len(seen) >= 10))
    assert 10 <= len(seen) <= 10 + 3
    assert len(backend.started) == len(seen)  # everything started reported an outcome


def test_an_async_cancel_check_and_on_outcome_are_awaited():
    backend = ScriptedBackend()
    seen = []

    async def on_outcome(outcome):
        seen.append(outcome.item_id)

    async def cancel_check():
        return len(seen) >= 4

    config = make_config(concurrency=1)
    asyncio.run(run_requests(backend, make_requests(50, config), config, on_outcome=on_outcome,
                             cancel_check=cancel_check))
    assert seen == [1, 2, 3, 4]


def test_the_sync_wrapper_calls_back_on_the_callers_thread_and_can_cancel():
    import threading

    backend = ScriptedBackend(delay=0.01)
    config = make_config(concurrency=2)
    seen, threads = [], set()

    def on_outcome(outcome):
        seen.append(outcome.item_id)
        threads.add(threading.get_ident())

    run_requests_sync(backend, make_requests(500, config), config, on_outcome=on_outcome,
                      cancel_check=lambda: len(seen) >= 6, cancel_poll_s=0)
    assert threads == {threading.get_ident()}
    assert 6 <= len(seen) < 40
    assert len(seen) == len(backend.started)


def test_an_error_in_the_callers_callback_propagates_from_the_sync_wrapper():
    def on_outcome(outcome):
        raise RuntimeError("database is down")

    with pytest.raises(RuntimeError, match="database is down"):
        run_requests_sync(ScriptedBackend(), make_requests(20), make_config(), on_outcome=on_outcome)


def test_backoff_uses_full_jitter_and_honours_retry_after():
    rng = random.Random(1)
    delays = [backoff_delay(3, base_s=0.5, cap_s=30, retry_after=None, rng=rng) for _ in range(500)]
    assert 0 <= min(delays) < 0.2 and 1.8 < max(delays) <= 2.0  # uniform in [0, 0.5 * 2^2]
    capped = [backoff_delay(20, base_s=0.5, cap_s=30, retry_after=None, rng=rng) for _ in range(200)]
    assert max(capped) <= 30
    waits = [backoff_delay(1, base_s=0.5, cap_s=30, retry_after=4.0, rng=rng) for _ in range(200)]
    assert min(waits) >= 4.0 and max(waits) <= 4.5


class BatchBackend(JudgeBackend):
    """Shaped like the future student: many items per call."""

    name = "batch"
    max_batch_size = 4

    def __init__(self):
        self.batches: list[list[int]] = []

    async def judge_batch(self, requests, config, *, acquire=None):
        self.batches.append([r.item_id for r in requests])
        return [ok(r) for r in requests]


def test_a_batch_backend_gets_items_in_batches_of_its_size():
    backend = BatchBackend()
    outcomes = run(backend, 10, concurrency=1)
    assert backend.batches == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    assert sorted(o.item_id for o in outcomes) == list(range(1, 11))


def test_an_error_in_the_callers_callback_propagates_from_the_async_engine_as_itself():
    def on_outcome(outcome):
        raise RuntimeError("database is down")

    config = make_config()
    with pytest.raises(RuntimeError, match="database is down"):
        asyncio.run(run_requests(ScriptedBackend(), make_requests(20, config), config, on_outcome=on_outcome))


def test_the_sync_wrapper_starts_judging_while_the_caller_still_builds_requests():
    """A chunk's first calls overlap with loading and prompting the rest (the generator runs on the
    caller's thread, kept a little ahead of the workers), and a batch backend still gets full batches."""
    import threading

    backend = ScriptedBackend(delay=0.01)
    config = make_config(concurrency=2)
    built = make_requests(40, config)
    main_thread = threading.get_ident()
    seen_started_early = []

    def lazily():
        for i, request in enumerate(built):
            assert threading.get_ident() == main_thread  # the ORM may be used here
            if i == 10:
                deadline = time.monotonic() + 5
                while not backend.started and time.monotonic() < deadline:
                    time.sleep(0.01)
                seen_started_early.append(bool(backend.started))
            yield request

    outcomes = []
    run_requests_sync(backend, lazily(), config, on_outcome=outcomes.append)
    assert seen_started_early == [True]
    assert sorted(o.item_id for o in outcomes) == [r.item_id for r in built]

    batch = BatchBackend()
    run_requests_sync(batch, iter(make_requests(10, config)), make_config(concurrency=1), on_outcome=lambda o: None)
    assert sorted(batch.batches) == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]


def test_an_error_while_building_requests_stops_the_engine_and_propagates():
    backend = ScriptedBackend(delay=0.01)
    config = make_config(concurrency=2)
    built = make_requests(20, config)
    outcomes = []

    def failing():
        yield from built[:8]
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError, match="database went away"):
        run_requests_sync(backend, failing(), config, on_outcome=outcomes.append, lookahead=1)
    # Nothing past the failure was sent; what was sent finished (its outcome may go unwritten: a
    # redelivered chunk judges it again, as with any error of the caller).
    assert set(backend.started) <= {r.item_id for r in built[:8]}
    assert backend.in_flight == 0
