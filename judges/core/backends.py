"""Judge backends behind one small interface and a lazy registry (healthchecks' TRANSPORTS style).

A backend turns requests into outcomes. Provider faults are raised, not returned, as
`TransientError` (the engine retries with backoff) or `PermanentError` (recorded at once); an answer
that fails validation is not a provider fault and comes back as an outcome with `error_kind` set.

The registry maps names to dotted paths so that importing this module does not import every
provider SDK (or, later, torch for the student).
"""

from __future__ import annotations

import email.utils
import importlib
import time
from collections.abc import Awaitable, Callable, Sequence
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
    # The engine groups up to this many requests per call of `judge_batch`.
    max_batch_size: ClassVar[int] = 1

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


# Backends that call a model. Imported labels need none: `judges.services.judge_run_import` loads them
# as a finished run. A local model (the distilled student) registers here with `max_batch_size` > 1
# and a `judge_batch` that scores many items per forward pass.
BACKENDS: dict[str, str] = {
    "openai": "judges.core.openai_backend.OpenAIBackend",
}


def get_backend(name: str, **kwargs: Any) -> JudgeBackend:
    """Instantiate the backend registered as `name`, importing its module only now."""
    try:
        dotted = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown judge backend {name!r}; known: {', '.join(sorted(BACKENDS))}") from None
    module_name, _, class_name = dotted.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**kwargs)


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

