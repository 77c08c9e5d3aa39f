"""Judge backends behind one small interface and a lazy registry (healthchecks' TRANSPORTS style).

A backend turns requests into outcomes. Provider faults are raised, not returned, as
`TransientError` (the engine retries with backoff) or `PermanentError` (recorded at once); an answer
that fails validation is not a provider fault and comes back as an outcome with `error_kind` set.

`BACKENDS` is the one registry of backends: a `BackendSpec` per name with its label, the dotted
path of its class (imported only when a run needs it, so importing this module imports no provider
SDK and no torch) and what it can do. The judge version's choices, the forms, the service checks,
the run's Celery queue and the calibration pages all read it; nothing else names a backend.
"""

from __future__ import annotations

import email.utils
import importlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar

from .types import JudgeConfig, JudgeOutcome, JudgeRequest

# Called by a backend before each model call with the tokens that call may use; the engine passes
# the rate limiter's `acquire`, so repair turns are rate-limited too.
Acquire = Callable[[int], Awaitable[None]]


class TransientError(Exception):
    """Worth retrying: rate limits, 5xx, timeouts, dropped connections."""

    def __init__(self, message: str, *, kind: str = "server_error", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


class PermanentError(Exception):
    """Retrying cannot help: bad request, bad credentials, unknown model."""

    def __init__(self, message: str, *, kind: str = "permanent") -> None:
        super().__init__(message)
        self.kind = kind


class JudgeBackend:
    """Base class. Subclasses implement `judge` (one call per item, e.g. an HTTP API) or override
    `judge_batch` and set `max_batch_size` > 1 (a local model that scores many items per forward pass).
    """

    name: ClassVar[str] = "base"
    # The engine groups up to this many requests per call of `judge_batch`; `get_backend` sets it
    # from the registry entry.
    max_batch_size: int = 1

    async def judge(
        self, request: JudgeRequest, config: JudgeConfig, *, acquire: Acquire | None = None
    ) -> JudgeOutcome:
        raise NotImplementedError

    async def judge_batch(
        self, requests: Sequence[JudgeRequest], config: JudgeConfig, *, acquire: Acquire | None = None
    ) -> list[JudgeOutcome]:
        """One outcome per request, in order. Raising TransientError retries the whole batch."""
        return [await self.judge(r, config, acquire=acquire) for r in requests]

    async def aclose(self) -> None:
        """Release connections; called by the engine's sync wrapper when its event loop ends."""


@dataclass(frozen=True)
class BackendSpec:
    """One registered backend: how it is named and shown, where its class lives, what it needs."""

    name: str
    label: str
    # Dotted path of the JudgeBackend subclass; None for a backend with no model to call (imported
    # labels load as a finished run through `judges.services.judge_run_import`).
    path: str | None
    # Calls an OpenAI-compatible endpoint named in settings (SAGE_ENDPOINT_<NAME>_*).
    needs_endpoint: bool = False
    # Judges from a compiled LLM prompt (policy text, precedents, item). False: the backend gets the
    # item's texts (`JudgeRequest.item`), no prompt is built and no precedents are selected.
    prompt_based: bool = True
    # Backed by a trained student model (`JudgeVersion.student_model`), which must be promoted.
    uses_student: bool = False
    # How its cost is counted: "tokens" (x the version's $/1M prices), "per_1k" (a price per 1,000
    # judgments set on the version) or "hardware" (measured seconds x SAGE_STUDENT_USD_PER_HOUR).
    pricing: str = "tokens"
    # Requests per `judge_batch` call (a local model scores many items per forward pass).
    max_batch_size: int = 1
    # The Django setting naming the Celery queue its runs go to; None: the default queue.
    queue_setting: str | None = None

    @property
    def has_model(self) -> bool:
        return self.path is not None


BACKENDS: dict[str, BackendSpec] = {spec.name: spec for spec in (
    BackendSpec("openai", "OpenAI-compatible endpoint", "judges.core.openai_backend.OpenAIBackend",
                needs_endpoint=True),
    BackendSpec("imported", "Imported labels", None, prompt_based=False, pricing="per_1k"),
    # The distilled student (distill/): a local cross-encoder, many items per forward pass, on a
    # queue of its own so a GPU host can take its runs (`celery -A sage worker -Q student`). A chunk
    # (SAGE_JUDGE_CHUNK_SIZE) up to 512 items goes to the predictor whole; it cuts its own forward
    # batches by length (32 pairs on CPU, 512 on CUDA).
    BackendSpec("student", "Distilled student model", "judges.core.student_backend.StudentBackend",
                prompt_based=False, uses_student=True, pricing="hardware", max_batch_size=512,
                queue_setting="SAGE_STUDENT_QUEUE"),
)}


def backend_spec(name: str) -> BackendSpec:
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown judge backend {name!r}; known: {', '.join(sorted(BACKENDS))}") from None


def backend_choices() -> list[tuple[str, str]]:
    """(name, label) of every registered backend: the model field's and the forms' choices."""
    return [(spec.name, spec.label) for spec in BACKENDS.values()]


def backends_where(**capabilities: Any) -> list[str]:
    """Names of the registered backends whose capabilities equal the given ones, e.g.
    `backends_where(has_model=False)`."""
    return [spec.name for spec in BACKENDS.values()
            if all(getattr(spec, key) == value for key, value in capabilities.items())]


def get_backend(name: str, **kwargs: Any) -> JudgeBackend:
    """Instantiate the backend registered as `name`, importing its module only now."""
    spec = backend_spec(name)
    if spec.path is None:
        raise ValueError(f"judge backend {name!r} has no model to call")
    module_name, _, class_name = spec.path.rpartition(".")
    backend = getattr(importlib.import_module(module_name), class_name)(**kwargs)
    backend.max_batch_size = spec.max_batch_size
    return backend


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date (RFC 9110)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = datetime.fromtimestamp(now if now is not None else time.time(), tz=timezone.utc)
    return max(0.0, (when - current).total_seconds())


def error_outcome(
    request: JudgeRequest, *, kind: str, message: str, prompt: str, attempts: int = 1,
    latency_ms: float = 0.0, raw_response: str = "", tokens_in: int = 0, tokens_out: int = 0,
) -> JudgeOutcome:
    return JudgeOutcome(
        item_id=request.item_id, labels=None, rationale="", raw_response=raw_response, prompt=prompt,
        tokens_in=tokens_in, tokens_out=tokens_out, latency_ms=latency_ms, attempts=attempts,
        error_kind=kind, error_message=message,
    )

