"""Every fault kind through the fault server and the engine: retried, honoured, recorded."""

from __future__ import annotations

from collections import Counter

import pytest

from judges.core.engine import run_requests_sync
from judges.core.openai_backend import CLIENTS, OpenAIBackend
from judges.testing.fault_server import running_fault_server

from .conftest import make_config, make_requests


@pytest.fixture(params=CLIENTS)
def client(request):
    """Every fault through each client: both must map it to the same outcome."""
    return request.param


def run(server, client="direct", n=1, **config):
    config = make_config(**config)
    outcomes = []
    run_requests_sync(OpenAIBackend(server.base_url, client=client), make_requests(n, config), config,
                      on_outcome=outcomes.append, backoff_base_s=0.01)
    return sorted(outcomes, key=lambda o: o.item_id)


def test_a_429_is_retried_no_sooner_than_its_retry_after(client):
    with running_fault_server(script=["rate_limited", "ok"], retry_after_s=0.6) as server:
        [outcome] = run(server, client)
        (first_at, _, first), (second_at, _, second) = server.server.log
    assert (first, second) == ("rate_limited", "ok")
    assert second_at - first_at >= 0.6
    assert outcome.ok and outcome.attempts == 2


def test_a_429_that_never_clears_is_recorded_as_rate_limited(client):
    with running_fault_server(rate_429=1.0, retry_after_s=0.01) as server:
        [outcome] = run(server, client, max_retries=2)
        assert server.stats()["by_outcome"]["rate_limited"] == 3
    assert outcome.error_kind == "rate_limited"
    assert outcome.attempts == 3
    assert "gave up after 3 attempts" in outcome.error_message


def test_a_500_is_retried(client):
    with running_fault_server(script=["server_error", "server_error", "ok"]) as server:
        [outcome] = run(server, client)
    assert outcome.ok and outcome.attempts == 3


def test_persistent_500s_are_recorded_as_server_errors(client):
    with running_fault_server(rate_500=1.0) as server:
        [outcome] = run(server, client, max_retries=1)
    assert outcome.error_kind == "server_error" and outcome.attempts == 2
    assert outcome.prompt.startswith("### system")  # the prompt is viewable even for an error


def test_a_stalled_request_times_out_and_is_retried(client):
    with running_fault_server(script=["timeout", "ok"], timeout_sleep_s=5) as server:
        [outcome] = run(server, client, timeout_s=0.3)
    assert outcome.ok and outcome.attempts == 2


def test_requests_that_always_stall_are_recorded_as_timeouts(client):
    with running_fault_server(rate_timeout=1.0, timeout_sleep_s=5) as server:
        [outcome] = run(server, client, timeout_s=0.2, max_retries=1)
    assert outcome.error_kind == "timeout" and outcome.attempts == 2


def test_a_dropped_connection_is_retried(client):
    with running_fault_server(script=["timeout", "ok"], timeout_mode="drop") as server:
        [outcome] = run(server, client)
    assert outcome.ok and outcome.attempts == 2


def test_malformed_json_goes_through_repair_and_then_is_recorded(client):
    with running_fault_server(rate_malformed=1.0) as server:
        outcomes = run(server, client, n=3)
        assert server.stats()["by_outcome"]["malformed"] == 6  # each item: the call and one repair
    assert [o.error_kind for o in outcomes] == ["invalid_json"] * 3


def test_out_of_scale_labels_are_recorded(client):
    with running_fault_server(rate_out_of_scale=1.0) as server:
        outcomes = run(server, client, n=2)
    assert [o.error_kind for o in outcomes] == ["out_of_scale"] * 2
    assert all(o.labels is None for o in outcomes)


def test_every_item_gets_exactly_one_outcome_under_mixed_faults(client):
    with running_fault_server(rate_429=0.1, rate_500=0.1, rate_timeout=0.05, rate_malformed=0.1,
                              rate_out_of_scale=0.1, retry_after_s=0.01, timeout_sleep_s=5, seed=7) as server:
        outcomes = run(server, client, n=60, concurrency=16, timeout_s=0.5)
        stats = server.stats()
    assert sorted(o.item_id for o in outcomes) == list(range(1, 61))
    kinds = Counter(o.error_kind for o in outcomes)
    assert kinds[None] >= 40
    assert set(kinds) <= {None, "invalid_json", "out_of_scale", "timeout", "rate_limited", "server_error"}
    assert all((o.labels is None) == (o.error_kind is not None) for o in outcomes)
    assert all(f in stats["by_outcome"] for f in ("rate_limited", "server_error", "malformed", "out_of_scale"))
    assert stats["by_outcome"]["rate_limited"] > 0 and stats["by_outcome"]["server_error"] > 0


@pytest.mark.parametrize("seed", [1, 2])
def test_the_fault_servers_draws_are_reproducible(seed):
    def faults():
        with running_fault_server(rate_500=0.3, rate_malformed=0.2, seed=seed) as server:
            run(server, n=20, concurrency=8, max_retries=4)
            return sorted((key, outcome) for _, key, outcome in server.server.log)

    assert faults() == faults()
