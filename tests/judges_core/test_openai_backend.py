"""The OpenAI-compatible backend against the fault server: modes, repair, error mapping."""

from __future__ import annotations

import subprocess
import sys
import time
from email.utils import formatdate

import pytest

from judges.core.backends import BACKENDS, get_backend, parse_retry_after
from judges.core.engine import run_requests_sync
from judges.core.openai_backend import OpenAIBackend, _completion, response_format
from judges.testing.fault_server import running_fault_server

from .conftest import make_config, make_requests


def judge_all(base_url: str, n: int = 1, **config):
    config = make_config(**config)
    outcomes = []
    run_requests_sync(OpenAIBackend(base_url), make_requests(n, config), config, on_outcome=outcomes.append,
                      backoff_base_s=0.01)
    return sorted(outcomes, key=lambda o: o.item_id)


@pytest.mark.parametrize("json_mode", ["json_schema", "json_object_schema"])
def test_it_gets_parsed_labels_in_either_json_mode(json_mode):
    with running_fault_server() as server:
        [outcome] = judge_all(server.base_url, json_mode=json_mode)
    assert outcome.ok, outcome.error_message
    assert set(outcome.labels) == {"relevance", "freshness"}
    assert outcome.rationale.startswith("Deterministic fault-server judgment")
    assert outcome.tokens_in > 100 and outcome.tokens_out > 0
    assert outcome.latency_ms > 0 and outcome.attempts == 1 and not outcome.repaired
    assert outcome.prompt.startswith("### system") and "⟦BEGIN DATA body" in outcome.prompt
    assert outcome.raw_response.startswith('{"rationale"')


def test_a_completion_is_read_from_the_raw_json_without_trusting_its_shape():
    full = {"id": "chatcmpl-1", "usage": {"prompt_tokens": 120, "completion_tokens": 30},
            "choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": '{"a": 1}'}}]}
    got = _completion(full, 12.5)
    assert (got.content, got.tokens_in, got.tokens_out, got.response_id, got.finish_reason, got.latency_ms) == (
        '{"a": 1}', 120, 30, "chatcmpl-1", "stop", 12.5)
    # A refusal is kept as the answer (it then fails parsing and is recorded as an error).
    refusal = {"choices": [{"message": {"content": None, "refusal": "I cannot help with that."}}]}
    assert _completion(refusal, 1).content == "I cannot help with that."
    # Servers that leave out usage, send no choices, or send nonsense give empty fields, not a crash.
    for odd in ({}, {"choices": []}, {"choices": "x"}, {"choices": [None]}, {"choices": [{"message": None}]},
                {"usage": {"prompt_tokens": "12", "completion_tokens": -1}}, ["not", "an", "object"], None):
        got = _completion(odd, 1)
        assert (got.content, got.tokens_in, got.tokens_out, got.finish_reason) == ("", 0, 0, "")


def test_response_format_uses_the_endpoints_strongest_mode():
    schema = {"type": "object"}
    assert response_format(schema, "json_schema") == {
        "type": "json_schema", "json_schema": {"name": "judgment", "strict": True, "schema": schema}}
    assert response_format(schema, "json_object_schema") == {"type": "json_object", "schema": schema}


def test_malformed_json_is_repaired_in_one_follow_up_turn():
    with running_fault_server(script=["malformed", "ok"]) as server:
        [outcome] = judge_all(server.base_url)
        assert server.stats()["requests"] == 2
    assert outcome.ok and outcome.repaired
    # The prompt shown is the conversation that produced the labels, repair turn included.
    assert "### assistant" in outcome.prompt and "could not be used: not valid JSON" in outcome.prompt
    assert outcome.tokens_in > 200  # both calls counted


def test_malformed_json_twice_is_recorded_not_defaulted():
    with running_fault_server(rate_malformed=1.0) as server:
        [outcome] = judge_all(server.base_url)
        assert server.stats()["requests"] == 2  # one call, one repair, nothing more
    assert outcome.labels is None
    assert outcome.error_kind == "invalid_json"
    assert "after one repair turn" in outcome.error_message
    assert outcome.raw_response.startswith('{"rationale": "this answer stops')


def test_out_of_scale_labels_twice_are_recorded():
    with running_fault_server(rate_out_of_scale=1.0) as server:
        [outcome] = judge_all(server.base_url)
    assert outcome.labels is None
    assert outcome.error_kind == "out_of_scale"
    assert "outside the scale" in outcome.error_message


def test_a_client_error_is_permanent_and_not_retried():
    with running_fault_server() as server:
        [outcome] = judge_all(server.base_url + "/no-such-prefix", max_retries=5)
        assert server.stats()["requests"] == 0
    assert outcome.error_kind == "permanent"
    assert "404" in outcome.error_message
    assert outcome.attempts == 1


def test_an_unreachable_endpoint_is_a_connection_error_after_retries():
    with running_fault_server() as server:
        url = server.base_url
    [outcome] = judge_all(url, max_retries=2)  # the server is gone now
    assert outcome.error_kind == "connection_error"
    assert outcome.attempts == 3


def test_retry_after_is_read_as_seconds_or_an_http_date():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    now = time.time()
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


def test_the_registry_builds_backends_by_name():
    assert isinstance(get_backend("openai", base_url="http://127.0.0.1:1/v1"), OpenAIBackend)
    assert set(BACKENDS) == {"openai"}
    with pytest.raises(ValueError, match="unknown judge backend"):
        get_backend("nope")


def test_the_registry_imports_provider_sdks_lazily():
    code = "import sys, judges.core.backends, judges.core.engine; print('openai' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert result.stdout.strip() == "False"
