"""Any OpenAI-compatible chat endpoint (OpenAI, Azure, vLLM, Ollama, llama.cpp).

Two clients speak to it, chosen per endpoint (SAGE_ENDPOINT_<NAME>_CLIENT):

- `direct` (the default): the chat-completions POST over one aiohttp session per event loop. The
  request is one JSON body and the answer one JSON object, so this is a few dozen lines, and a worker
  spends half the CPU per judgment that it does with the SDK (0.53-0.65 against 1.14-1.21 ms at c=64,
  BENCHMARKS.md "Judge clients"): at 64 requests in flight on one event loop that CPU is latency
  every other request waits through, 92.9% of ideal throughput against 89.8%.
- `sdk`: the official `openai` client, for what it adds beyond the one request: its own headers and
  options, and every new feature the day it ships.

Both raise the same errors: an answer's status, Retry-After and error body map to one
TransientError/PermanentError in `_status_error`, whichever client read them.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import os
import re
import ssl
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .backends import Acquire, JudgeBackend, PermanentError, TransientError, error_outcome, parse_retry_after
from .prompt import messages_token_estimate, prompt_text
from .schema import InvalidOutput, parse_judgment, repair_message
from .types import JudgeConfig, JudgeOutcome, JudgeRequest

if TYPE_CHECKING:
    import aiohttp
    from openai import AsyncOpenAI

# The clients an endpoint may use; the first is the default.
CLIENTS = ("direct", "sdk")

# Statuses the provider documents as "try again" besides 429 and 5xx.
_RETRYABLE_4XX = {408: "timeout", 409: "server_error"}

# How servers say a prompt (plus max_tokens) exceeds the model's context: OpenAI, vLLM and
# llama-cpp-python send code "context_length_exceeded" and "This model's maximum context length is
# N tokens..."; llama.cpp's own server sends type "exceed_context_size_error", "...exceeds the
# available context size...".
_CONTEXT_CODES = {"context_length_exceeded", "exceed_context_size_error"}
_CONTEXT_MESSAGE = re.compile(r"maximum context length|context (length|window|size)|exceeds? (the )?(available )?context",
                              re.IGNORECASE)


def _context_overflow(error: Any, message: str) -> bool:
    """Whether an error body (the object under "error", or the whole body) says the prompt is too long."""
    error = error if isinstance(error, Mapping) else {}
    markers = {str(error.get("code") or ""), str(error.get("type") or "")}
    return bool(markers & _CONTEXT_CODES) or bool(_CONTEXT_MESSAGE.search(message))


def _status_error(status: int, headers: Mapping[str, str], error: Any, message: str) -> Exception:
    """The engine's error for an HTTP error answer: 429 and 5xx (and 408/409) are retried, honouring
    Retry-After; a prompt over the model's context is its own kind; anything else is permanent."""
    text = f"HTTP {status}: {message}"
    if status == 429:
        return TransientError(text, kind="rate_limited", retry_after=_retry_after(headers))
    if status >= 500:
        return TransientError(text, kind="server_error", retry_after=_retry_after(headers))
    if status in _RETRYABLE_4XX:
        return TransientError(text, kind=_RETRYABLE_4XX[status])
    if status in (400, 413) and _context_overflow(error, message):
        return PermanentError(text, kind="context_length")
    return PermanentError(text)


def _error_of(body: Any) -> tuple[Any, str]:
    """(the error object, its message) of an error answer's decoded body, as OpenAI and the compatible
    servers shape it: {"error": {"message": ...}}, {"error": "..."} or {"message": ...}."""
    error = body.get("error", body) if isinstance(body, Mapping) else body
    if isinstance(error, Mapping) and isinstance(error.get("message"), str):
        return error, error["message"]
    if isinstance(error, str) and error:
        return error, error
    return error, json.dumps(body)[:500] if body is not None else "no error body"


@dataclass
class _Completion:
    content: str
    tokens_in: int
    tokens_out: int
    latency_ms: float
    response_id: str
    finish_reason: str


def _completion(response: Any, latency_ms: float) -> _Completion:
    """The fields we use from a chat completion's JSON, read defensively: a compatible server may
    leave out usage or send an empty choice list. A refusal or an empty answer becomes "" and then
    fails parsing: recorded as an error, never defaulted."""
    body = response if isinstance(response, dict) else {}
    choices = body.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content = message.get("content") or message.get("refusal") or ""
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    return _Completion(
        content=content if isinstance(content, str) else "",
        tokens_in=_int(usage.get("prompt_tokens")),
        tokens_out=_int(usage.get("completion_tokens")),
        latency_ms=latency_ms,
        response_id=str(body.get("id") or ""),
        finish_reason=str(choice.get("finish_reason") or ""),
    )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def response_format(schema: dict[str, Any], json_mode: str) -> dict[str, Any]:
    """The strongest structured-output mode the endpoint accepts."""
    if json_mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "judgment", "strict": True, "schema": schema}}
    # llama.cpp answers HTTP 500 to json_schema but compiles a schema riding on json_object into a
    # grammar; OpenAI-proper ignores the extra key and only guarantees JSON.
    return {"type": "json_object", "schema": schema}


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _json_request(url: str, api_key: str, timeout_s: float, body: dict[str, Any] | None = None) -> Any:
    """GET (or POST `body`) and decode JSON; None when unreachable, refused (404...) or not JSON."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=timeout_s) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def _server_root(base_url: str) -> str:
    return base_url.rstrip("/").removesuffix("/v1")


def probe_context_tokens(base_url: str, api_key: str, model: str, *, timeout_s: float = 3.0) -> int | None:
    """The context window the server reports for `model`, or None where it does not say.

    llama.cpp's server: GET /props (beside /v1) → default_generation_settings.n_ctx, the context a
    request gets. vLLM: GET /v1/models → max_model_len; LM Studio and routers: context_length.
    OpenAI and llama-cpp-python's server report nothing, so their endpoints need
    SAGE_ENDPOINT_<NAME>_CONTEXT_TOKENS. Never raises: an unreachable server just does not say.
    """
    props = _json_request(f"{_server_root(base_url)}/props", api_key, timeout_s)
    if isinstance(props, dict):
        generation = props.get("default_generation_settings")
        n_ctx = _positive_int(generation.get("n_ctx") if isinstance(generation, dict) else None)
        if n_ctx or _positive_int(props.get("n_ctx")):
            return n_ctx or props["n_ctx"]
    models = _json_request(f"{base_url.rstrip('/')}/models", api_key, timeout_s)
    data = models.get("data") if isinstance(models, dict) else None
    entries = [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []
    entry = next((m for m in entries if m.get("id") == model), entries[0] if len(entries) == 1 else {})
    for key in ("max_model_len", "context_length", "context_window"):
        if _positive_int(entry.get(key)):
            return entry[key]
    return None


def count_tokens(base_url: str, api_key: str, model: str, text: str, *, timeout_s: float = 3.0) -> int | None:
    """`text` in the model's own tokens, where the server offers its tokenizer; else None.

    llama-cpp-python: POST /extras/tokenize/count → count. llama.cpp's server: POST /tokenize →
    tokens. OpenAI has no such endpoint. A local server busy generating may not answer in time;
    then the caller falls back to its estimate.
    """
    root = _server_root(base_url)
    counted = _json_request(f"{root}/extras/tokenize/count", api_key, timeout_s, {"input": text, "model": model})
    if isinstance(counted, dict) and _positive_int(counted.get("count")):
        return counted["count"]
    tokens = _json_request(f"{root}/tokenize", api_key, timeout_s, {"content": text})
    if isinstance(tokens, dict) and isinstance(tokens.get("tokens"), list) and tokens["tokens"]:
        return len(tokens["tokens"])
    return None


def _refused(exc: BaseException) -> bool:
    """Whether a timeout error is really a failed connect.

    The SDK's aiohttp transport reports every aiohttp connection error, a refused connect or an
    unknown host included, as a connect *timeout*; the cause chain still holds the real error, and
    the run page should say "cannot connect" rather than "too slow".
    """
    seen: BaseException | None = exc
    while seen is not None:
        names = {cls.__name__ for cls in type(seen).__mro__}  # DNS failures are ClientConnectorErrors too
        if isinstance(seen, ConnectionError) or names & {"ClientConnectorError", "ConnectError"}:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _retry_after(headers: Mapping[str, str]) -> float | None:
    # OpenAI sends a millisecond-precision variant; prefer it when present.
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"))


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    """One TLS context for every client this process makes. The transport otherwise loads the CA
    bundle anew for each (20-40 ms of `load_verify_locations`, holding the GIL), and a client is made
    per chunk: 5-9% of a 100-item chunk at c=64. The same trust as the SDK's default: SSL_CERT_FILE
    or SSL_CERT_DIR when set, else certifi's bundle, else the system's."""
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    try:
        import certifi
    except ImportError:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


def _env_proxy(url: str) -> str | None:
    """The proxy the environment names for `url`: HTTPS_PROXY / HTTP_PROXY (any case), unless NO_PROXY
    exempts the host. Credentials in the proxy's URL are used for it."""
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)


class _DirectClient:
    """POST /chat/completions with aiohttp, as the SDK would send it, and the answer's JSON as is.

    One session (connection pool) per client, and a client per event loop (see `OpenAIBackend.client`).
    The system's trust as the SDK's (`_ssl_context()`), and the environment's proxy read once here:
    aiohttp's `trust_env` reads it again for every request, about 0.5 ms of CPU each, twice the rest
    of the request (bench/http_clients.py).
    """

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.proxy = _env_proxy(self.url)
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json",
                        "Accept": "application/json", "User-Agent": "sage-judge"}
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            import aiohttp

            # No connection limit of its own: the engine's concurrency is the limit, and a pool
            # smaller than it would queue requests invisibly.
            self._session = aiohttp.ClientSession(
                headers=self.headers, connector=aiohttp.TCPConnector(limit=0, ssl=_ssl_context()),
            )
        return self._session

    async def post(self, body: dict[str, Any], timeout_s: float) -> Any:
        import aiohttp

        try:
            async with self.session().post(self.url, data=json.dumps(body).encode(), proxy=self.proxy,
                                           timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
                raw = await response.read()
                status, headers = response.status, response.headers
        except TimeoutError as exc:  # aiohttp's connect and read timeouts are TimeoutErrors
            raise TransientError(f"no answer within {timeout_s:g}s", kind="timeout") from exc
        except aiohttp.ClientConnectorError as exc:
            raise TransientError(f"cannot connect to {self.base_url}: {exc.os_error or exc}",
                                 kind="connection_error") from exc
        except aiohttp.ClientError as exc:  # dropped mid-answer, reset, a broken body
            raise TransientError(f"connection error: {exc or type(exc).__name__}", kind="connection_error") from exc
        try:
            decoded = json.loads(raw)
        except ValueError:
            decoded = None
        if not 200 <= status < 300:
            error, message = _error_of(decoded if decoded is not None else raw.decode(errors="replace")[:500])
            raise _status_error(status, headers, error, message)
        if decoded is None:
            # A proxy's HTML page or a cut-off body: not the model's answer, and worth another try.
            raise TransientError(f"HTTP {status} with a body that is not JSON", kind="server_error")
        return decoded

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


class _SDKClient:
    """The same POST through the official client."""

    def __init__(self, base_url: str, api_key: str) -> None:
        import openai

        self.base_url = base_url
        # The SDK's aiohttp transport: httpx's connection pool costs CPU that grows with the number
        # of open connections, and at 64 in flight that, not the model server, capped a 2-core worker
        # (bench/README_judge_engine.md).
        self.client: AsyncOpenAI = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key, http_client=openai.DefaultAioHttpClient(verify=_ssl_context()),
            max_retries=0,  # the engine retries, with backoff, jitter and the shared rate limit
        )
        # The SDK gives every POST without one an idempotency key made with uuid4() (OpenAI's client
        # sends no such header, it is only built). Its os.urandom() gives up the GIL on the engine's
        # thread once per call, and the caller's thread (prompts, DB writes) may then hold it for up
        # to a switch interval while the loop waits. A counter under a per-client random prefix is
        # as unique (the engine, not the SDK, retries: a retry is a new request with a new key) and
        # costs no system call.
        self._key_prefix = f"sage-{uuid.uuid4().hex[:16]}"
        self._key_counter = itertools.count()

    async def post(self, body: dict[str, Any], timeout_s: float) -> Any:
        import openai

        try:
            # The SDK's generic POST rather than chat.completions.create: create() runs every call's
            # parameters through a TypedDict transformer (a deep walk over the messages' union
            # types) that cost more CPU per judgment than the rest of the request put together, and
            # `cast_to=object` skips building a pydantic ChatCompletion (another ~0.4 ms) for the
            # few fields `_completion` reads. The body is exactly what create() would send.
            return await self.client.post(
                "/chat/completions", cast_to=object, body=body,
                options={"timeout": timeout_s, "idempotency_key": f"{self._key_prefix}-{next(self._key_counter)}"},
            )
        except openai.APITimeoutError as exc:
            # The SDK's aiohttp transport reports a refused connect as a connect *timeout*.
            if _refused(exc):
                raise TransientError(f"cannot connect to {self.base_url}: {exc.__cause__}",
                                     kind="connection_error") from exc
            raise TransientError(f"no answer within {timeout_s:g}s", kind="timeout") from exc
        except openai.APIConnectionError as exc:
            raise TransientError(str(exc), kind="connection_error") from exc
        except openai.APIStatusError as exc:
            # The SDK keeps the object under "error" as exc.body.
            error, message = _error_of({"error": exc.body}) if exc.body is not None else (None, exc.message)
            raise _status_error(exc.status_code, exc.response.headers, error, message) from exc

    async def aclose(self) -> None:
        await self.client.close()


class OpenAIBackend(JudgeBackend):
    name = "openai"

    def __init__(self, base_url: str | None = None, api_key: str | None = None, client: str = CLIENTS[0]) -> None:
        if client not in CLIENTS:
            raise ValueError(f"unknown OpenAI-compatible client {client!r}; known: {', '.join(CLIENTS)}")
        self.base_url = base_url or "https://api.openai.com/v1"
        # Local servers (llama.cpp, vLLM) need no key, but the SDK refuses to start without one.
        self.api_key = api_key or "unused"
        self.client_name = client
        self._client: _DirectClient | _SDKClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def client(self) -> _DirectClient | _SDKClient:
        # A client's connection pool belongs to the event loop it was first used on; a sync caller
        # runs a fresh loop per batch, so a new loop gets a new client.
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            kind = _DirectClient if self.client_name == "direct" else _SDKClient
            self._client = kind(self.base_url, self.api_key)
            self._client_loop = loop
        return self._client

    async def warm(self) -> None:
        """Make the client (and its connection pool) before the first request needs it, while the
        caller is still loading and prompting the first items."""
        client = self.client()
        if isinstance(client, _DirectClient):
            client.session()

    async def aclose(self) -> None:
        if self._client is not None:
            try:
                await self._client.aclose()
            finally:
                self._client = None
                self._client_loop = None

    async def _complete(
        self, messages: list[dict[str, str]], request: JudgeRequest, config: JudgeConfig,
        acquire: Acquire | None,
    ) -> _Completion:
        if acquire is not None:
            # Providers count max_tokens against the tokens/minute limit before generating.
            await acquire(messages_token_estimate(messages) + config.max_tokens)
        started = time.perf_counter()
        response = await self.client().post({
            "model": config.model,
            "messages": messages,
            "temperature": config.temperature,
            # max_tokens rather than max_completion_tokens: every compatible server accepts it.
            "max_tokens": config.max_tokens,
            "response_format": response_format(request.schema, config.json_mode),
        }, config.timeout_s)
        latency_ms = (time.perf_counter() - started) * 1000
        return _completion(response, latency_ms)

    async def judge(
        self, request: JudgeRequest, config: JudgeConfig, *, acquire: Acquire | None = None
    ) -> JudgeOutcome:
        messages = list(request.messages)
        first = await self._complete(messages, request, config, acquire)
        try:
            labels, rationale = parse_judgment(first.content, request.rubric,
                                               rationale_max_chars=config.rationale_max_chars)
            return self._outcome(request, messages, [first], labels, rationale)
        except InvalidOutput as error:
            first_error = error

        # One repair turn: show the model its answer and exactly what was wrong. A transient error
        # here propagates and the engine retries the item from the start; that costs one extra call
        # on a rare path and keeps the retry logic in one place.
        repair = [
            *messages,
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": repair_message(first_error, request.rubric)},
        ]
        second = await self._complete(repair, request, config, acquire)
        try:
            labels, rationale = parse_judgment(second.content, request.rubric,
                                               rationale_max_chars=config.rationale_max_chars)
            return self._outcome(request, repair, [first, second], labels, rationale, repaired=True)
        except InvalidOutput as error:
            return error_outcome(
                request, kind=error.kind,
                message=f"{error.message} (after one repair turn; first answer: {first_error.message})",
                prompt=prompt_text(repair), raw_response=second.content,
                latency_ms=first.latency_ms + second.latency_ms,
                tokens_in=first.tokens_in + second.tokens_in, tokens_out=first.tokens_out + second.tokens_out,
            )

    def _outcome(
        self, request: JudgeRequest, messages: list[dict[str, str]], calls: list[_Completion],
        labels: dict[str, int], rationale: str, *, repaired: bool = False,
    ) -> JudgeOutcome:
        last = calls[-1]
        return JudgeOutcome(
            item_id=request.item_id, labels=labels, rationale=rationale, raw_response=last.content,
            prompt=prompt_text(messages),
            tokens_in=sum(c.tokens_in for c in calls), tokens_out=sum(c.tokens_out for c in calls),
            latency_ms=sum(c.latency_ms for c in calls), attempts=1, error_kind=None, error_message="",
            repaired=repaired,
            extra={"response_id": last.response_id, "finish_reason": last.finish_reason},
        )
