"""The OpenAI-compatible backend against the fault server: modes, repair, error mapping."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from judges.core.backends import BACKENDS, get_backend, parse_retry_after
from judges.core.engine import run_requests_sync
from judges.core.openai_backend import (
    CLIENTS,
    OpenAIBackend,
    _completion,
    count_tokens,
    probe_context_tokens,
    response_format,
)
from judges.testing.fault_server import running_fault_server

from .conftest import make_config, make_requests


def judge_all(base_url: str, n: int = 1, client: str = "direct", **config):
    config = make_config(**config)
    outcomes = []
    run_requests_sync(OpenAIBackend(base_url, client=client), make_requests(n, config), config,
                      on_outcome=outcomes.append, backoff_base_s=0.01)
    return sorted(outcomes, key=lambda o: o.item_id)


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("json_mode", ["json_schema", "json_object_schema"])
def test_it_gets_parsed_labels_in_either_json_mode(json_mode, client):
    with running_fault_server() as server:
        [outcome] = judge_all(server.base_url, json_mode=json_mode, client=client)
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


@pytest.mark.parametrize("client", CLIENTS)
def test_a_client_error_is_permanent_and_not_retried(client):
    with running_fault_server() as server:
        [outcome] = judge_all(server.base_url + "/no-such-prefix", max_retries=5, client=client)
        assert server.stats()["requests"] == 0
    assert outcome.error_kind == "permanent"
    assert "404" in outcome.error_message
    assert outcome.attempts == 1


@pytest.mark.parametrize("client", CLIENTS)
def test_a_prompt_over_the_models_context_is_a_context_length_error_and_not_retried(client):
    with running_fault_server(context_tokens=300) as server:
        [outcome] = judge_all(server.base_url, max_tokens=200, max_retries=5, client=client)
        assert server.stats()["requests"] == 1
    assert outcome.error_kind == "context_length" and outcome.attempts == 1
    assert outcome.error_message.startswith("HTTP 400:")
    assert "This model's maximum context length is 300 tokens" in outcome.error_message


@contextmanager
def serving(routes: dict[str, tuple[int, object]]):
    """A loopback HTTP server answering GET and POST on each path with (status, JSON body or raw bytes)."""

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            status, body = routes.get(self.path, (404, {"error": "not found"}))
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.answer()

        do_GET = answer

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("error", [
    # llama.cpp's own server
    {"code": 400, "type": "exceed_context_size_error", "n_prompt_tokens": 3012, "n_ctx": 2048,
     "message": "the request exceeds the available context size, try increasing it"},
    # vLLM (no code, only the message)
    {"object": "error", "type": "BadRequestError", "code": 400,
     "message": "This model's maximum context length is 2048 tokens. However, you requested 3100 tokens."},
])
@pytest.mark.parametrize("client", CLIENTS)
def test_every_servers_way_of_saying_the_prompt_is_too_long_is_a_context_length_error(error, client):
    with serving({"/v1/chat/completions": (400, {"error": error})}) as url:
        [outcome] = judge_all(url, client=client)
    assert outcome.error_kind == "context_length", outcome.error_message


@pytest.mark.parametrize("client", CLIENTS)
def test_another_bad_request_stays_permanent(client):
    error = {"message": "Invalid value for 'temperature'", "type": "invalid_request_error", "code": "invalid_value"}
    with serving({"/v1/chat/completions": (400, {"error": error})}) as url:
        [outcome] = judge_all(url, client=client)
    assert outcome.error_kind == "permanent"
    assert outcome.error_message == "HTTP 400: Invalid value for 'temperature'"


def test_the_context_window_is_read_from_servers_that_report_it():
    with running_fault_server(context_tokens=2048) as llama_cpp_like:
        assert probe_context_tokens(llama_cpp_like.base_url, "", "fault-model") == 2048  # GET /props
    vllm = {"/v1/models": (200, {"object": "list", "data": [
        {"id": "other", "max_model_len": 8192}, {"id": "served", "object": "model", "max_model_len": 32768}]})}
    with serving(vllm) as url:
        assert probe_context_tokens(url, "key", "served") == 32768
        assert probe_context_tokens(url, "key", "unknown") is None  # two models, neither is it
    routers = {"/v1/models": (200, {"data": [{"id": "m", "context_length": 128000}]})}
    with serving(routers) as url:
        assert probe_context_tokens(url, "", "m") == 128000


def test_servers_that_do_not_say_give_no_context_window():
    with running_fault_server(context_tokens=2048, report_context=False) as server:
        # llama-cpp-python's server: no /props, models without a context length.
        assert probe_context_tokens(server.base_url, "", "fault-model") is None
    with serving({"/props": (200, {"default_generation_settings": {"n_ctx": "big"}})}) as url:
        assert probe_context_tokens(url, "", "m") is None
    with running_fault_server() as gone:
        url = gone.base_url
    assert probe_context_tokens(url, "", "m", timeout_s=1) is None  # unreachable: no answer, no error


def test_prompts_are_counted_with_the_servers_tokenizer_where_it_offers_one():
    with serving({"/extras/tokenize/count": (200, {"count": 1234})}) as llama_cpp_python:
        assert count_tokens(llama_cpp_python, "", "local", "some text") == 1234
    with serving({"/tokenize": (200, {"tokens": [1, 2, 3]})}) as llama_cpp:
        assert count_tokens(llama_cpp, "", "local", "some text") == 3
    with running_fault_server() as openai_like:
        assert count_tokens(openai_like.base_url, "", "m", "some text") is None


@pytest.mark.parametrize("client", CLIENTS)
def test_an_unreachable_endpoint_is_a_connection_error_after_retries(client):
    with running_fault_server() as server:
        url = server.base_url
    [outcome] = judge_all(url, max_retries=2, client=client)  # the server is gone now
    assert outcome.error_kind == "connection_error"
    assert outcome.attempts == 3
    assert f"cannot connect to {url}" in outcome.error_message


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
    assert {"openai", "imported", "student"} <= set(BACKENDS)
    with pytest.raises(ValueError, match="unknown judge backend"):
        get_backend("nope")


def test_the_registry_imports_provider_sdks_lazily():
    code = "import sys, judges.core.backends, judges.core.engine; print('openai' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert result.stdout.strip() == "False"


def test_no_request_asks_the_sdk_for_a_uuid4(monkeypatch):
    """The SDK makes an idempotency key with uuid4() for every POST that has none (os.urandom, a
    system call that gives the GIL to the caller's thread mid-request); the backend names its own,
    so a chunk of requests never reaches uuid4. The OpenAI client sends no such header either way."""
    import openai._base_client as base_client

    def no_uuid4(self):
        raise AssertionError("the SDK made a uuid4 key for a request")

    monkeypatch.setattr(base_client.BaseClient, "_idempotency_key", no_uuid4)
    with running_fault_server() as server:
        outcomes = judge_all(server.base_url, n=5, concurrency=2, client="sdk")
    assert [o.ok for o in outcomes] == [True] * 5, [o.error_message for o in outcomes]


@pytest.mark.parametrize("client", CLIENTS)
def test_clients_share_one_tls_context_that_still_verifies(monkeypatch, client):
    """A client is made per chunk; the CA bundle is loaded once per process, not per client, and the
    shared context verifies certificates and host names like the SDK's default."""
    import asyncio
    import ssl

    from judges.core import openai_backend

    context = openai_backend._ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0

    def no_new_context(*args, **kwargs):
        raise AssertionError("a client loaded the CA bundle again")

    monkeypatch.setattr(ssl, "create_default_context", no_new_context)

    async def two_clients():
        for _ in range(2):
            backend = OpenAIBackend("https://models.example.invalid/v1", client=client)
            await backend.warm()
            await backend.aclose()

    asyncio.run(two_clients())


@pytest.mark.parametrize("status, body, kind, message", [
    (429, {"error": {"message": "Slow down", "type": "requests"}}, "rate_limited", "HTTP 429: Slow down"),
    (503, "<html>bad gateway</html>", "server_error", "HTTP 503: <html>bad gateway</html>"),
    (401, {"error": "invalid api key"}, "permanent", "HTTP 401: invalid api key"),
    (408, {"message": "request timeout"}, "timeout", "HTTP 408: request timeout"),
])
@pytest.mark.parametrize("client", CLIENTS)
def test_both_clients_say_the_same_about_an_error_answer(client, status, body, kind, message):
    with serving({"/v1/chat/completions": (status, body)}) as url:
        [outcome] = judge_all(url, client=client, max_retries=0)
    assert outcome.error_kind == kind
    assert outcome.error_message.startswith(message), outcome.error_message


def test_a_2xx_answer_that_is_not_json_is_retried_then_recorded():
    """A proxy's HTML page or a cut-off body under 200 is not the model's answer: worth another try,
    then an error on the item, never a parse of HTML."""
    with serving({"/v1/chat/completions": (200, b"<html>captive portal</html>")}) as url:
        [outcome] = judge_all(url, max_retries=1)
    assert outcome.error_kind == "server_error" and outcome.attempts == 2
    assert "HTTP 200 with a body that is not JSON" in outcome.error_message


def test_an_unknown_client_is_refused():
    with pytest.raises(ValueError, match="unknown OpenAI-compatible client 'curl'; known: direct, sdk"):
        OpenAIBackend("http://127.0.0.1:1/v1", client="curl")


def test_the_direct_client_sends_what_the_sdk_sends():
    """The same path, body and headers that matter from both clients: a server cannot tell them apart."""
    seen: list[tuple[str, dict, str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, body, self.headers["Authorization"], self.headers["Content-Type"]))
            data = json.dumps({"choices": [{"message": {"content": "{}"}, "finish_reason": "stop"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        for client in CLIENTS:
            config = make_config(max_retries=0)
            run_requests_sync(OpenAIBackend(url, "secret", client=client), make_requests(1, config), config,
                              on_outcome=lambda outcome: None)
    finally:
        server.shutdown()
        server.server_close()
    # Each client: the call and its repair turn ("{}" is no judgment).
    assert len(seen) == 4
    assert seen[:2] == seen[2:]
    path, body, authorization, content_type = seen[0]
    assert (path, authorization, content_type) == ("/v1/chat/completions", "Bearer secret", "application/json")
    assert body["model"] and body["messages"] and body["response_format"]["type"] == "json_schema"


@pytest.mark.parametrize("client", CLIENTS)
def test_requests_go_through_the_environments_proxy_unless_no_proxy_exempts_the_host(client, monkeypatch):
    """The direct client reads HTTP(S)_PROXY and NO_PROXY once per client, not per request; both
    clients honour them."""
    completion = {"choices": [{"message": {"content": "{}"}, "finish_reason": "stop"}]}
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    # A forward proxy sees the absolute URL on its request line.
    with serving({"http://models.example.invalid/v1/chat/completions": (200, completion)}) as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url.removesuffix("/v1"))
        [through] = judge_all("http://models.example.invalid/v1", client=client, max_retries=0)
        monkeypatch.setenv("NO_PROXY", "models.example.invalid")
        [direct] = judge_all("http://models.example.invalid/v1", client=client, max_retries=0)
    assert through.error_kind == "missing_field", through.error_message  # the proxy's "{}" arrived
    assert direct.error_kind == "connection_error", direct.error_message  # no such host without it
