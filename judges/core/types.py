"""Typed values that cross the boundary between the judges core and its callers.

All frozen: a request or an outcome is a record of what was asked and what came back, and the
models layer stores them as such. Nothing here touches the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from policy.rubric import Rubric

# "json_schema" is OpenAI's strict structured-output mode. llama.cpp's server answers HTTP 500 to it
# but constrains output with a grammar when the schema rides on a json_object response_format.
JsonMode = Literal["json_schema", "json_object_schema"]

@dataclass(frozen=True)
class JudgeItem:
    """One (query, result document) pair to judge. All text fields are untrusted."""

    item_id: int
    query: str
    title: str
    body: str
    url: str


@dataclass(frozen=True)
class PrecedentExample:
    """An accepted precedent as the prompt shows it. Its texts are untrusted too: a precedent is
    built from a real result document, which may carry injection text."""

    query: str
    title: str
    body: str
    labels: dict[str, int]
    rationale: str
    clause: str


@dataclass(frozen=True)
class JudgeConfig:
    """The knobs of one judge version that matter to the core (endpoint credentials do not live here:
    the caller resolves them from settings by endpoint name and hands them to the backend)."""

    model: str
    temperature: float
    max_tokens: int
    doc_char_budget: int = 4000
    rationale_max_chars: int = 600
    concurrency: int = 16
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    max_retries: int = 5
    timeout_s: float = 60
    json_mode: JsonMode = "json_schema"

    def __post_init__(self) -> None:
        # Fail at construction, not mid-run, when a judge version was saved with nonsense.
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.max_retries < 0:
            raise ValueError("max_retries must not be negative")
        if self.doc_char_budget < 1 or self.rationale_max_chars < 1 or self.max_tokens < 1:
            raise ValueError("doc_char_budget, rationale_max_chars and max_tokens must be positive")
        if self.json_mode not in ("json_schema", "json_object_schema"):
            raise ValueError(f"unknown json_mode {self.json_mode!r}")


@dataclass(frozen=True)
class JudgeRequest:
    """One compiled call: the messages to send and the schema the answer must match.

    The rubric travels with the request because the backend validates the answer against it (the
    schema alone cannot express "never default silently" checks such as a missing dimension when a
    provider ignores the schema).

    A backend that does not judge from a prompt (the registry's `prompt_based=False`, e.g. the
    distilled student) gets the item itself in `item`, with no messages and no schema.
    """

    item_id: int
    messages: list[dict[str, str]]
    schema: dict[str, Any]
    rubric: Rubric
    item: JudgeItem | None = None


@dataclass(frozen=True)
class JudgeOutcome:
    """What judging one item produced. Exactly one of `labels` / `error_kind` is set.

    `error_kind` names what went wrong, and the run page groups errors by it: rate_limited,
    server_error, timeout, connection_error (each after every retry); context_length (the prompt
    does not fit the model's context); permanent (another 4xx); invalid_json, out_of_scale,
    missing_field (the answer, and its one repair, did not match the rubric); internal_error (a bug
    on our side while judging the item, recorded rather than raised).
    """

    item_id: int
    labels: dict[str, int] | None
    rationale: str
    raw_response: str
    prompt: str  # the exact full conversation sent for the final answer, as prompt_text() shows it
    tokens_in: int
    tokens_out: int
    latency_ms: float
    attempts: int
    error_kind: str | None
    error_message: str
    repaired: bool = False  # True when the labels came from the one repair turn
    extra: dict[str, Any] = field(default_factory=dict)  # backend provenance (e.g. response id)

    @property
    def ok(self) -> bool:
        return self.error_kind is None
