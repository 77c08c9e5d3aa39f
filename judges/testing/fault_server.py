"""A fault-injecting OpenAI-compatible chat server for tests and benchmarks (loopback only).

Normal answers follow the JSON schema in the request's `response_format` (either the `json_schema`
or llama.cpp's `json_object` + `schema` form) with labels derived from a hash of the conversation, so
the same request always gets the same labels. Faults are drawn per request at configured rates:

    429 with Retry-After · 500 · timeout (sleep past the client's timeout, or drop the connection)
    · malformed JSON content · out-of-scale labels

With `context_tokens` set, a request whose prompt (counted as its `usage` counts it) plus max_tokens
exceeds it is refused as llama-cpp-python's server refuses it (HTTP 400, code
"context_length_exceeded"), and GET /props reports it as llama.cpp's server does unless
`report_context` is off (llama-cpp-python's server has no /props).

The draw for the n-th time a given conversation arrives is a hash of (seed, conversation, n), so a
run's faults are reproducible whatever order concurrent requests arrive in. `script` overrides the
rates with an exact sequence of outcomes for tests that need one.

    python -m judges.testing.fault_server --port 8099 --latency-ms 200 --rate-429 0.05
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import signal
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from aiohttp import web

HOST = "127.0.0.1"  # never listen beyond loopback: this server answers anyone with fake judgments
OUTCOMES = ("ok", "rate_limited", "server_error", "timeout", "malformed", "out_of_scale")


@dataclass
class FaultConfig:
    latency_ms: float = 0.0
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_timeout: float = 0.0
    rate_malformed: float = 0.0
    rate_out_of_scale: float = 0.0
    retry_after_s: float = 1.0
    timeout_sleep_s: float = 30.0
    timeout_mode: Literal["sleep", "drop"] = "sleep"
    seed: int = 0
    context_tokens: int | None = None
    report_context: bool = True
    # Outcomes (names from OUTCOMES) served to the next requests in order, before rates apply.
    script: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        rates = [self.rate_429, self.rate_500, self.rate_timeout, self.rate_malformed, self.rate_out_of_scale]
        if any(r < 0 or r > 1 for r in rates) or sum(rates) > 1 + 1e-9:
            raise ValueError("fault rates must each be in [0, 1] and sum to at most 1")
        unknown = [s for s in self.script if s not in OUTCOMES]
        if unknown:
            raise ValueError(f"unknown scripted outcome(s) {unknown}; use {OUTCOMES}")


def _unit(*parts: object) -> float:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class FaultServer:
    def __init__(self, config: FaultConfig | None = None) -> None:
        self.config = config or FaultConfig()
        self._script = deque(self.config.script)
        self._lock = threading.Lock()  # stats are read from the test's thread
        self._counts: Counter[str] = Counter()
        self._seen: Counter[str] = Counter()
        self.log: list[tuple[float, str, str]] = []  # (monotonic time, conversation key, outcome)
        self.in_flight = 0
        self.max_in_flight = 0
        self._sleepers: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    # -- outcome selection -------------------------------------------------------------------------
    def choose(self, key: str) -> str:
        with self._lock:
            if self._script:
                return self._script.popleft()
            n = self._seen[key]
            self._seen[key] += 1
        c = self.config
        u = _unit(c.seed, key, n)
        for outcome, rate in (("rate_limited", c.rate_429), ("server_error", c.rate_500),
                              ("timeout", c.rate_timeout), ("malformed", c.rate_malformed),
                              ("out_of_scale", c.rate_out_of_scale)):
            if u < rate:
                return outcome
            u -= rate
        return "ok"

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": sum(self._counts.values()),
                "by_outcome": {o: self._counts.get(o, 0) for o in (*OUTCOMES, "context_length")},
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "config": {k: v for k, v in asdict(self.config).items() if k != "script"},
            }

    def reset_stats(self) -> None:
        with self._lock:
            self._counts.clear()
            self.log.clear()
            self.max_in_flight = self.in_flight

    # -- HTTP ------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/props", self.props)
        app.router.add_get("/stats", self.stats_view)
        app.router.add_post("/stats/reset", self.reset_view)
        return app

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": "fault-model", "object": "model", "created": 0, "owned_by": "sage-tests"}]})

    async def props(self, request: web.Request) -> web.Response:
        if self.config.context_tokens is None or not self.config.report_context:
            return web.json_response({"error": {"message": "Not Found", "type": "not_found_error"}}, status=404)
        return web.json_response({"default_generation_settings": {"n_ctx": self.config.context_tokens},
                                  "total_slots": 1})

    async def stats_view(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def reset_view(self, request: web.Request) -> web.Response:
        self.reset_stats()
        return web.json_response(self.stats())

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
            messages = body["messages"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "invalid_request_error", "body must be JSON with messages")
        key = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:16]
        overflow = self._context_overflow(body, messages)
        if overflow is not None:
            with self._lock:
                self._counts["context_length"] += 1
                self.log.append((time.monotonic(), key, "context_length"))
            return overflow
        outcome = self.choose(key)
        with self._lock:
            self._counts[outcome] += 1
            self.log.append((time.monotonic(), key, outcome))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.config.latency_ms:
                await asyncio.sleep(self.config.latency_ms / 1000)
            return await self._answer(request, body, messages, key, outcome)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _answer(self, request: web.Request, body: dict[str, Any], messages: list[dict[str, Any]],
                      key: str, outcome: str) -> web.StreamResponse:
        if outcome == "rate_limited":
            return _error(429, "rate_limit_exceeded", "Rate limit reached (injected).",
                          headers={"Retry-After": f"{self.config.retry_after_s:g}"})
        if outcome == "server_error":
            return _error(500, "server_error", "The server had an error (injected).")
        if outcome == "timeout":
            if self.config.timeout_mode == "drop":
                if request.transport is not None:
                    request.transport.abort()
                raise asyncio.CancelledError  # nothing to send on an aborted connection
            task = asyncio.current_task()
            assert task is not None
            self._sleepers.add(task)
            try:
                await asyncio.sleep(self.config.timeout_sleep_s)
            finally:
                self._sleepers.discard(task)
        schema = _schema_from(body.get("response_format"))
        if outcome == "malformed":
            content = '{"rationale": "this answer stops in the middle of a str'
        else:
            content = json.dumps(_answer_for(schema, messages, key, out_of_scale=outcome == "out_of_scale"))
        usage = {"prompt_tokens": _prompt_tokens(messages), "completion_tokens": math.ceil(len(content) / 4)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return web.json_response({
            "id": f"chatcmpl-fault-{key}-{time.monotonic_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fault-model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": usage,
        })

    def _context_overflow(self, body: dict[str, Any], messages: list[dict[str, Any]]) -> web.Response | None:
        context = self.config.context_tokens
        prompt = _prompt_tokens(messages)
        completion = body.get("max_tokens") or 0
        if context is None or prompt + completion <= context:
            return None
        return web.json_response({"error": {
            "message": (f"This model's maximum context length is {context} tokens. However, you requested "
                        f"{prompt + completion} tokens ({prompt} in the messages, {completion} in the completion). "
                        "Please reduce the length of the messages or completion."),
            "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}, status=400)

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self, port: int = 0) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Binding here (port 0 = the kernel picks a free one) avoids a find-then-bind race.
        sock.bind((HOST, port))
        self.port = sock.getsockname()[1]
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.SockSite(self._runner, sock, backlog=1024).start()
        return self.port

    async def stop(self) -> None:
        for task in list(self._sleepers):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _prompt_tokens(messages: list[dict[str, Any]]) -> int:
    # The judges' own estimate (messages_token_estimate): a test can put a prompt just over the edge.
    return sum(math.ceil(len(str(m.get("content", ""))) / 4) + 4 for m in messages)


def _error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "type": kind, "param": None, "code": kind}},
                             status=status, headers=headers)


def _schema_from(response_format: Any) -> dict[str, Any] | None:
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_schema":
        return (response_format.get("json_schema") or {}).get("schema")
    return response_format.get("schema")


def _answer_for(schema: dict[str, Any] | None, messages: list[dict[str, Any]], key: str, *,
                out_of_scale: bool) -> dict[str, Any]:
    user = next((str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), "")
    seed = hashlib.sha256(user.encode()).hexdigest()
    answer: dict[str, Any] = {}
    properties = (schema or {}).get("properties") or {"relevance": {"type": "integer", "enum": [0, 1, 2, 3]}}
    first_integer = True
    for n, (name, prop) in enumerate(properties.items()):
        if prop.get("type") == "integer":
            values = prop.get("enum") or list(range(prop.get("minimum", 0), prop.get("maximum", 3) + 1))
            if out_of_scale and first_integer:
                answer[name] = max(values) + 7
            else:
                answer[name] = values[int(seed[n * 4:n * 4 + 4] or "0", 16) % len(values)]
            first_integer = False
        elif prop.get("type") == "string":
            text = f"Deterministic fault-server judgment {seed[:8]} for conversation {key[:8]}."
            answer[name] = text[: prop.get("maxLength", len(text))]
    return answer


@dataclass
class RunningFaultServer:
    server: FaultServer
    base_url: str  # ends in /v1, as the OpenAI client expects

    @property
    def config(self) -> FaultConfig:
        return self.server.config

    def stats(self) -> dict[str, Any]:
        return self.server.stats()


@contextmanager
def running_fault_server(**config: Any) -> Iterator[RunningFaultServer]:
    """Start a fault server on a free loopback port in a background thread with its own event loop."""
    server = FaultServer(FaultConfig(**config))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fault-server", daemon=True)
    thread.start()
    try:
        port = asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=10)
        yield RunningFaultServer(server=server, base_url=f"http://{HOST}:{port}/v1")
    finally:
        try:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rate-429", type=float, default=0.0)
    parser.add_argument("--rate-500", type=float, default=0.0)
    parser.add_argument("--rate-timeout", type=float, default=0.0)
    parser.add_argument("--rate-malformed", type=float, default=0.0)
    parser.add_argument("--rate-out-of-scale", type=float, default=0.0)
    parser.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds sent with 429s")
    parser.add_argument("--timeout-sleep", type=float, default=30.0, help="how long a timeout fault stalls")
    parser.add_argument("--timeout-mode", choices=["sleep", "drop"], default="sleep")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--context-tokens", type=int, default=None,
                        help="refuse prompts + max_tokens over this many tokens, and report it at /props")
    args = parser.parse_args(argv)
    server = FaultServer(FaultConfig(
        latency_ms=args.latency_ms, rate_429=args.rate_429, rate_500=args.rate_500,
        rate_timeout=args.rate_timeout, rate_malformed=args.rate_malformed,
        rate_out_of_scale=args.rate_out_of_scale, retry_after_s=args.retry_after,
        timeout_sleep_s=args.timeout_sleep, timeout_mode=args.timeout_mode, seed=args.seed,
        context_tokens=args.context_tokens,
    ))

    async def serve() -> None:
        port = await server.start(args.port)
        print(f"fault server listening on http://{HOST}:{port}/v1", flush=True)
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopped.set)
        await stopped.wait()
        await server.stop()
        print(json.dumps(server.stats()), flush=True)

    asyncio.run(serve())


if __name__ == "__main__":
    main()
