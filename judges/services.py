"""Writes of the judges app: versions, runs (start, execute in chunks, cancel, resume, fail, sweep), imports.

A run flows: `judge_run_start` checks that the largest prompt fits the endpoint's context, saves a
queued run and queues `judge_run_execute_task` on commit → `judge_run_execute` claims it with a
conditional UPDATE and fans pending items out in chunks → each `judge_run_chunk` judges the items
of its chunk that still have no judgment (cache first, then the backend through the concurrent
engine), writes judgments with bulk inserts that ignore conflicts, and recomputes the run's counters
from the judgments table. A redelivered chunk only finds the items nobody judged yet, so nothing is
lost or duplicated. When every item has a judgment the run ends succeeded, finished with errors or
failed, by its share of errors.

Nothing stays "running" for ever: a task that raises after its retries fails the run through
`judge_run_fail` (the tasks' `on_failure`), and `judge_runs_sweep` (Celery beat, or the management
command) resumes runs whose heartbeat stopped, then fails them if resuming does not help.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, F, Q, Sum, Value
from django.db.models.functions import Coalesce, Least, Length
from django.utils import timezone

from policy.models import PolicyVersion
from precedent.models import Precedent, PrecedentSet
from precedent.selection import SelectionQuery, precedents_select_many
from precedent.services import precedent_set_preview, precedent_set_snapshot
from sage.bulk import insert_ignoring_conflicts
from sage.jsonl import jsonl_rows
from sage.roles import Role, has_role
from traffic.models import Item, Sample, SampleItem

from .core.backends import BACKENDS, BackendSpec, backend_spec, get_backend
from .core.engine import run_requests_sync
from .core.openai_backend import count_tokens, probe_context_tokens
from .core.prompt import (
    PRECEDENT_RATIONALE_MAX_CHARS,
    PROMPT_TEMPLATE_VERSION,
    QUERY_MAX_CHARS,
    TITLE_MAX_CHARS,
    URL_MAX_CHARS,
    build_request,
    estimate_tokens,
    messages_token_estimate,
    precedent_body_budget,
)
from .core.ratelimit import make_rate_limiter
from .core.types import JudgeConfig, JudgeItem, JudgeOutcome, JudgeRequest, PrecedentExample
from .models import Judge, JudgeRun, JudgeVersion, Judgment

logger = logging.getLogger(__name__)

FLUSH_EVERY = 50
FLUSH_EVERY_S = 1.0
REFRESH_EVERY_S = 2.0
# While a chunk waits on a slow model no judgment arrives to flush; it still proves it is alive this often.
HEARTBEAT_EVERY_S = 10.0
# How long what an endpoint's server says of its context window and tokenizer is kept (per process).
CONTEXT_CACHE_S = 300
VERSION_FIELDS = ("backend", "model_name", "endpoint_name", "temperature", "max_tokens", "precedent_k",
                  "doc_char_budget", "concurrency", "requests_per_minute", "tokens_per_minute", "policy_version",
                  "price_in_per_m", "price_out_per_m", "provenance", "price_per_1k", "student_model")


class JudgeError(Exception):
    """A judge rule was broken; the message is shown to the user as is."""


def _require(user: AbstractUser | None, role: Role, what: str) -> None:
    if user is not None and not has_role(user, role):
        raise JudgeError(f"Only {role.value}s and admins can {what}.")


# --- judges and versions ---------------------------------------------------------------------

def student_promotion(student, surface):
    """The decision that lets `student` back judge versions on `surface`, or None (distill's rule).

    Fails closed: without distill's selector nothing can show a promotion, so nothing is promoted.
    """
    try:
        from distill.selectors import student_promotion as promotion
    except ImportError:
        logger.warning("distill.selectors.student_promotion is missing: no student counts as promoted")
        return None
    return promotion(student, surface)


def _check_student(config: dict[str, Any], surface) -> None:
    student = config.get("student_model")
    if student is None:
        raise JudgeError("A student judge names the trained student model it judges with.")
    if not student.model_hash or student.status != "succeeded":
        raise JudgeError(f"Student {student.name!r} has no trained model yet ({student.get_status_display().lower()}).")
    if student_promotion(student, surface) is None:
        raise JudgeError(f"Student {student.name!r} is not promoted on surface {surface}: only a promoted student can "
                         "back a judge version. Evaluate and promote it on its model page (an admin may override a "
                         "refusal with a recorded reason).")
    trained = student.training_set.policy_version
    policy_version = config.get("policy_version")
    if isinstance(policy_version, PolicyVersion) and trained.rubric_hash != policy_version.rubric_hash:
        raise JudgeError(f"Student {student.name!r} was trained on the rubric of {trained}; {policy_version} has "
                         "another rubric, whose labels it cannot give. Train a student on it, or keep the old policy.")


def _normalize_config(config: dict[str, Any]) -> BackendSpec:
    """Clear what the chosen backend does not use (a version switched from a student to an endpoint
    drops its student), and fill what it implies (a student's model name is the student's)."""
    backend = config.get("backend")
    if backend not in BACKENDS:
        raise JudgeError(f"Unknown backend {backend!r}; known: {', '.join(BACKENDS)}.")
    spec = backend_spec(backend)
    if not spec.uses_student:
        config["student_model"] = None
    elif config.get("student_model") is not None:
        config["model_name"] = config["student_model"].name[:200]
    if not spec.needs_endpoint:
        config["endpoint_name"] = ""
        # A local model computes one batch at a time (its predictor holds a lock); more batches in
        # flight would only wait on it. Parallelism comes from more worker processes instead.
        config["concurrency"] = 1
    if not spec.prompt_based:
        # No prompt: no precedents to select, no template.
        config["precedent_k"] = 0
        config["prompt_template_version"] = ""
    if spec.pricing != "per_1k":
        config["price_per_1k"] = None
    return spec


def _check_config(config: dict[str, Any], surface) -> None:
    spec = _normalize_config(config)
    if spec.needs_endpoint and config.get("endpoint_name") not in settings.SAGE_JUDGE_ENDPOINTS:
        known = ", ".join(sorted(settings.SAGE_JUDGE_ENDPOINTS)) or "none"
        raise JudgeError(f"Unknown endpoint {config.get('endpoint_name')!r}; configured endpoints: {known} "
                         "(set SAGE_ENDPOINTS and SAGE_ENDPOINT_<NAME>_BASE_URL/_API_KEY).")
    if not isinstance(config.get("policy_version"), PolicyVersion) or not config["policy_version"].is_published:
        raise JudgeError("A judge applies a published policy version.")
    if not (0 <= float(config.get("temperature", 0)) <= 2):
        raise JudgeError("Temperature must be between 0 and 2.")
    if int(config.get("concurrency", 1)) < 1 or int(config.get("max_tokens", 1)) < 1:
        raise JudgeError("Concurrency and max tokens must be at least 1.")
    if config.get("price_per_1k") is not None and Decimal(config["price_per_1k"]) < 0:
        raise JudgeError("The price per 1,000 judgments cannot be negative.")
    if spec.uses_student:
        _check_student(config, surface)


def judge_create(*, name: str, surface, user: AbstractUser | None, description: str = "",
                 **config: Any) -> JudgeVersion:
    _require(user, Role.ANALYST, "create judges")
    config.setdefault("prompt_template_version", PROMPT_TEMPLATE_VERSION)  # cleared for backends without a prompt
    _check_config(config, surface)
    with transaction.atomic():
        if Judge.objects.filter(name=name).exists():
            raise JudgeError(f"A judge named {name!r} exists already; edit it to make a new version.")
        judge = Judge.objects.create(name=name, surface=surface, description=description, created_by=user)
        return JudgeVersion.objects.create(judge=judge, number=1, created_by=user, change_note="created", **config)


def judge_version_create(*, judge: Judge, user: AbstractUser | None, change_note: str = "",
                         **changes: Any) -> JudgeVersion:
    """A new version from the latest one with `changes`; versions themselves never change."""
    _require(user, Role.ANALYST, "edit judges")
    latest = judge.latest_version()
    config = {name: getattr(latest, name) for name in VERSION_FIELDS}
    config["prompt_template_version"] = latest.prompt_template_version
    config.update(changes)
    _check_config(config, judge.surface)
    with transaction.atomic():
        Judge.objects.select_for_update().get(pk=judge.pk)
        number = judge.versions.order_by("-number").values_list("number", flat=True).first() + 1
        return JudgeVersion.objects.create(judge=judge, number=number, created_by=user,
                                           change_note=change_note[:300], **config)


def judge_config(version: JudgeVersion) -> JudgeConfig:
    endpoint = settings.SAGE_JUDGE_ENDPOINTS.get(version.endpoint_name, {})
    return JudgeConfig(
        model=version.model_name, temperature=version.temperature, max_tokens=version.max_tokens,
        doc_char_budget=version.doc_char_budget, concurrency=version.concurrency,
        requests_per_minute=version.requests_per_minute, tokens_per_minute=version.tokens_per_minute,
        timeout_s=float(settings.SAGE_JUDGE_TIMEOUT_S),
        json_mode=endpoint.get("json_mode", "json_schema"),
    )


# --- estimates and starting ------------------------------------------------------------------

@dataclass(frozen=True)
class PromptBudget:
    """The largest prompt of a run against the context window of its endpoint's model."""

    prompt_tokens: int  # of the sample's largest item shown with the k largest precedents
    answer_tokens: int  # the version's max_tokens: servers reserve them out of the same window
    context_tokens: int | None  # None: neither the server nor a setting says
    context_source: str  # where context_tokens came from, for the message
    counted: bool = False  # prompt_tokens from the server's tokenizer rather than 4 characters a token

    @property
    def how_counted(self) -> str:
        return "counted with the server's tokenizer" if self.counted else "estimated at 4 characters a token"

    @property
    def needed(self) -> int:
        return self.prompt_tokens + self.answer_tokens

    @property
    def fits(self) -> bool:
        return self.context_tokens is None or self.needed <= self.context_tokens

    def problem(self, endpoint_name: str) -> str:
        """Why a run cannot start, or "" when it fits."""
        if self.fits:
            return ""
        return (f"The prompts do not fit the model's context: the largest is about {self.prompt_tokens:,} tokens "
                f"({self.how_counted}) plus {self.answer_tokens:,} reserved for the answer, {self.needed:,} in all, but "
                f"endpoint {endpoint_name!r} has a context of {self.context_tokens:,} tokens ({self.context_source}). "
                "Shorten the policy, lower the precedents per prompt or the document budget, lower max tokens, "
                "or use a model with a longer context.")


@dataclass(frozen=True)
class RunEstimate:
    items: int
    cached: int
    tokens_in: int
    tokens_out: int
    cost: Decimal
    budget: PromptBudget | None = None
    prompt_based: bool = True  # False: no prompt, no tokens; the cost is measured model time (judges.costs)


def _cache_key(version: JudgeVersion, precedent_set: PrecedentSet | None, item_hash: str) -> str:
    """The key of a judgment that has no prompt (imported labels): version, policy, precedents, item."""
    raw = f"{version.pk}|{version.policy_version_id}|{precedent_set.hash if precedent_set else '-'}|{item_hash}"
    return hashlib.sha256(raw.encode()).hexdigest()


def _model_cache_key(version: JudgeVersion, item_hash: str) -> str:
    """Reuse key of a judgment by a pinned local model (a student): the model's hash, the rubric's and
    the item's. The same weights give the same labels for the same item on the same scale, whichever
    judge version holds them."""
    model_hash = version.student_model.model_hash if version.student_model_id else ""
    raw = f"model|{version.backend}|{model_hash}|{version.policy_version.rubric_hash}|{item_hash}"
    return hashlib.sha256(raw.encode()).hexdigest()


def _prompt_cache_key(version: JudgeVersion, request) -> str:
    """Reuse key of a model judgment: the model settings plus the exact messages and schema sent.

    Equal judge settings, policy version (its text and rubric are in the prompt), selected precedents
    and item give an equal key, as the issue asks; keying on the prompt itself also lets a re-judge
    after a precedent was added reuse every item whose k nearest precedents did not change.
    """
    fingerprint = [version.backend, version.model_name, version.endpoint_name, version.temperature,
                   version.max_tokens, version.prompt_template_version, request.messages, request.schema]
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()


def judge_run_estimate(*, version: JudgeVersion, sample: Sample) -> RunEstimate:
    """Items, tokens and cost before confirming, from the prompt size of a few sampled items."""
    items = list(Item.objects.filter(sample_items__sample=sample).select_related("query", "document"))
    if not version.spec.prompt_based:
        # No prompt, no tokens: items reused from an earlier judgment by the same model are free.
        keys = [_model_cache_key(version, i.hash) for i in items]
        cached = Judgment.objects.filter(cache_key__in=keys, status=Judgment.Status.OK).values("cache_key").distinct().count()
        return RunEstimate(items=len(items), cached=cached, tokens_in=0, tokens_out=0, cost=Decimal(0), prompt_based=False)
    # A page shows the estimate, and pages never write: the snapshot is looked up, not taken.
    precedent_set = precedent_set_preview(policy=version.policy_version.policy) if version.precedent_k else None
    # Items judged before under this very version, policy and precedent set: reused for free. (The
    # run may reuse more: any item whose exact prompt was judged before, see _prompt_cache_key.)
    cached = 0 if precedent_set is not None and precedent_set.pk is None else Judgment.objects.filter(
        judge_version=version, policy_version=version.policy_version, precedent_set=precedent_set,
        item_hash__in=[i.hash for i in items], status=Judgment.Status.OK,
    ).values("item_hash").distinct().count()
    policy_tokens = estimate_tokens(version.policy_version.text) + 300 * len(version.policy_version.parsed_rubric().dimensions)
    per_item_in = [policy_tokens + estimate_tokens(i.query.text + i.document.title)
                   + min(estimate_tokens(i.document.body), version.doc_char_budget // 4)
                   + version.precedent_k * 250 for i in items]
    to_judge = len(items) - cached
    tokens_in = int(sum(per_item_in) * (to_judge / len(items))) if items else 0
    tokens_out = to_judge * min(version.max_tokens, 150)
    budget = judge_run_prompt_budget(version=version, sample=sample, precedent_set=precedent_set) if items else None
    return RunEstimate(items=len(items), cached=cached, tokens_in=tokens_in, tokens_out=tokens_out,
                       cost=version.cost(tokens_in, tokens_out).quantize(Decimal("0.0001")), budget=budget)


def endpoint_context_tokens(*, endpoint_name: str, model: str) -> tuple[int | None, str]:
    """The context window of `model` at an endpoint, and where that figure came from.

    The server's own answer first (llama.cpp and vLLM say; OpenAI does not), remembered for a few
    minutes per process; else SAGE_ENDPOINT_<NAME>_CONTEXT_TOKENS; else (None, "").
    """
    endpoint = settings.SAGE_JUDGE_ENDPOINTS.get(endpoint_name) or {}
    if endpoint.get("base_url"):
        key = "sage:judge-context:" + hashlib.sha256(f"{endpoint['base_url']}|{model}".encode()).hexdigest()[:32]
        reported = cache.get(key)
        if reported is None:
            reported = probe_context_tokens(endpoint["base_url"], endpoint.get("api_key") or "", model) or 0
            cache.set(key, reported, CONTEXT_CACHE_S)
        if reported:
            return reported, "reported by the server"
    if endpoint.get("context_tokens"):
        return endpoint["context_tokens"], f"SAGE_ENDPOINT_{endpoint_name.upper().replace('-', '_')}_CONTEXT_TOKENS"
    return None, ""


def _server_token_count(version: JudgeVersion, text: str) -> int | None:
    """`text` counted by the endpoint server's tokenizer; a server without one is not asked again for a while."""
    endpoint = settings.SAGE_JUDGE_ENDPOINTS.get(version.endpoint_name) or {}
    if not endpoint.get("base_url"):
        return None
    key = "sage:judge-no-tokenizer:" + hashlib.sha256(endpoint["base_url"].encode()).hexdigest()[:32]
    if cache.get(key):
        return None
    counted = count_tokens(endpoint["base_url"], endpoint.get("api_key") or "", version.model_name, text)
    if counted is None:
        cache.set(key, True, CONTEXT_CACHE_S)
    return counted


def judge_run_prompt_budget(*, version: JudgeVersion, sample: Sample,
                            precedent_set: PrecedentSet | None) -> PromptBudget:
    """Estimate the run's largest prompt: the sample item with the most text the prompt keeps, shown
    with the k precedents of the set that take the most room. An upper bound for every item."""
    config = judge_config(version)
    policy = version.policy_version
    kept = (Least(Length("query__text"), Value(QUERY_MAX_CHARS)) + Least(Length("document__title"), Value(TITLE_MAX_CHARS))
            + Least(Length("document__url"), Value(URL_MAX_CHARS))
            + Least(Length("document__body"), Value(version.doc_char_budget)))
    item = (Item.objects.filter(sample_items__sample=sample).select_related("query", "document")
            .annotate(kept=kept).order_by("-kept", "pk").first())
    if item is None:
        return PromptBudget(0, version.max_tokens, None, "")
    shown: list[PrecedentExample] = []
    if version.precedent_k and precedent_set is not None and precedent_set.size:
        room = (Least(Length("query"), Value(QUERY_MAX_CHARS)) + Least(Length("title"), Value(TITLE_MAX_CHARS))
                + Least(Length("body"), Value(precedent_body_budget(config)))
                + Least(Length("rationale"), Value(PRECEDENT_RATIONALE_MAX_CHARS)))
        members = [member[0] for member in precedent_set.members]
        largest = (Precedent.objects.filter(policy_id=precedent_set.policy_id, pk__in=members).annotate(room=room)
                   .order_by("-room", "pk")[:version.precedent_k])
        shown = [PrecedentExample(query=p.query, title=p.title, body=p.body, labels=p.labels, rationale=p.rationale,
                                  clause=p.clause) for p in largest]
    request = build_request(policy.text, policy.parsed_rubric(), shown, _judge_items([item])[0], config)
    context, source = endpoint_context_tokens(endpoint_name=version.endpoint_name, model=version.model_name)
    counted = None
    if context is not None:
        # Local servers, where contexts are small, tokenize for us; messages_token_estimate's framing on top.
        counted = _server_token_count(version, "\n".join(m["content"] for m in request.messages))
    prompt_tokens = (counted + 4 * len(request.messages)) if counted else messages_token_estimate(request.messages)
    return PromptBudget(prompt_tokens=prompt_tokens, answer_tokens=version.max_tokens, context_tokens=context,
                        context_source=source, counted=bool(counted))


def judge_run_start(*, version: JudgeVersion, sample: Sample, user: AbstractUser | None,
                    bypass_cache: bool = False) -> JudgeRun:
    from .tasks import judge_run_execute_task

    _require(user, Role.ANALYST, "run judges")
    spec = version.spec
    if not spec.has_model:
        raise JudgeError(f"An {spec.label.lower()} judge has no model to run; import its labels instead (the judge's "
                         "page, manage.py import_judgments, or POST /judges/api/judges/<id>/imports/).")
    if sample.item_count == 0:
        raise JudgeError(f"Sample {sample.name!r} has no items.")
    if version.judge.surface_id != sample.surface_id:
        raise JudgeError("The judge and the sample belong to different surfaces.")
    if spec.uses_student and student_promotion(version.student_model, version.judge.surface) is None:
        # Promoted when the version was saved, no longer now (a later decision refused it).
        raise JudgeError(f"Student {version.student_model} is no longer promoted on surface {version.judge.surface}; "
                         "its judge cannot run until it is promoted again.")
    precedent_set = None
    if spec.prompt_based:
        precedent_set = precedent_set_snapshot(policy=version.policy_version.policy) if version.precedent_k else None
        problem = judge_run_prompt_budget(version=version, sample=sample, precedent_set=precedent_set).problem(
            version.endpoint_name)
        if problem:
            raise JudgeError(problem)
    run = JudgeRun.objects.create(judge_version=version, sample=sample, precedent_set=precedent_set,
                                  total_items=sample.item_count, bypass_cache=bypass_cache, created_by=user,
                                  heartbeat_at=timezone.now())
    transaction.on_commit(lambda: judge_run_execute_task.delay(run.pk))
    return run


def judge_run_cancel(*, run: JudgeRun, user: AbstractUser | None) -> bool:
    _require(user, Role.ANALYST, "cancel runs")
    now = timezone.now()
    changed = JudgeRun.objects.filter(pk=run.pk, status__in=JudgeRun.ACTIVE).update(
        status=JudgeRun.Status.CANCELLED, cancel_requested_at=now, finished_at=now,
        message="Cancelled; judgments made before the cancel are kept.",
    )
    return changed == 1


def judge_run_resume(*, run: JudgeRun, user: AbstractUser | None) -> bool:
    """Queue the still-unjudged items of a run that did not succeed (failed, finished with errors,
    cancelled or stalled) again. Items that ended in an error keep their judgment and are not redone."""
    from .tasks import judge_run_execute_task

    _require(user, Role.ANALYST, "resume runs")
    changed = JudgeRun.objects.filter(pk=run.pk).exclude(status=JudgeRun.Status.SUCCEEDED).update(
        status=JudgeRun.Status.QUEUED, cancel_requested_at=None, finished_at=None, message="Resumed.",
        heartbeat_at=timezone.now(), stall_resumes=0)
    if changed:
        transaction.on_commit(lambda: judge_run_execute_task.delay(run.pk))
    return changed == 1


def judge_run_fail(*, run_id: int, reason: str) -> bool:
    """End an active run as failed with `reason`; the judgments it made are kept and counted.

    Called when a run's task raised after its retries, and by the stall sweep. False when the run
    had already ended (a cancel, or another failure, came first).
    """
    now = timezone.now()
    changed = JudgeRun.objects.filter(pk=run_id, status__in=JudgeRun.ACTIVE).update(
        status=JudgeRun.Status.FAILED, finished_at=now, message=reason[:4000])
    if changed:
        _recount(run_id)
        logger.warning("judge run %s failed: %s", run_id, reason)
    return changed == 1


# --- executing -------------------------------------------------------------------------------

def backend_queue(spec: BackendSpec) -> str:
    """The Celery queue the runs of a backend go to (its registry entry names the setting)."""
    return getattr(settings, spec.queue_setting) if spec.queue_setting else settings.CELERY_TASK_DEFAULT_QUEUE


def run_queues() -> list[str]:
    """Every queue a judge run's tasks may wait in."""
    return list(dict.fromkeys(backend_queue(spec) for spec in BACKENDS.values()))


def judge_run_queue(*, run_id: int) -> str:
    """The queue of a run's tasks, by its version's backend: a student's runs go where a GPU worker listens."""
    backend = JudgeRun.objects.filter(pk=run_id).values_list("judge_version__backend", flat=True).first()
    return backend_queue(backend_spec(backend)) if backend in BACKENDS else settings.CELERY_TASK_DEFAULT_QUEUE


def _pending_item_ids(run: JudgeRun, among: Iterable[int] | None = None) -> list[int]:
    """The run's sample items (of `among`, a chunk's, when given) with no judgment in the run yet,
    in sample order."""
    if among is None:
        qs = Item.objects.filter(sample_items__sample_id=run.sample_id).exclude(judgments__run=run)
        return list(qs.order_by("sample_items__position").values_list("pk", flat=True))
    # A chunk: two lookups by the unique (sample, item) and (run, item) indexes. As one anti-join
    # the planner, with no statistics yet for a freshly drawn sample, looped over the run's
    # judgments per item: 0.2-0.35 s before a 1,280-item chunk's first request (BENCHMARKS.md
    # "Full path"), more on a larger run.
    among = list(among)
    judged = set(Judgment.objects.filter(run=run, item_id__in=among).values_list("item_id", flat=True))
    ordered = (SampleItem.objects.filter(sample_id=run.sample_id, item_id__in=among).order_by("position")
               .values_list("item_id", flat=True))
    return [item_id for item_id in ordered if item_id not in judged]


# A chunk pays one model latency of ramp-up and one of tail: at c=64 the old fixed 100 items (1.6
# waves) kept a worker at 62-64% of ideal, 4 waves (256) at 81-84% (BENCHMARKS.md "Chunk size").
CHUNK_WAVES = 4


def judge_chunk_size(version: JudgeVersion) -> int:
    """Items per chunk task: SAGE_JUDGE_CHUNK_SIZE where set, else 100 or CHUNK_WAVES waves of the
    version's concurrency, whichever is more. A chunk lasts size / concurrency model latencies (4
    above concurrency 25, more below it), which CELERY_VISIBILITY_TIMEOUT must exceed."""
    return settings.SAGE_JUDGE_CHUNK_SIZE or max(100, CHUNK_WAVES * version.concurrency)


def judge_run_execute(*, run_id: int) -> int:
    """Claim a queued run and fan its pending items out in chunks; returns the number of chunks."""
    from .tasks import judge_run_chunk_task

    now = timezone.now()
    # A resumed run keeps its first start, so its elapsed time and throughput span the whole run.
    claimed = JudgeRun.objects.filter(pk=run_id, status=JudgeRun.Status.QUEUED).update(
        status=JudgeRun.Status.RUNNING, started_at=Coalesce(F("started_at"), Value(now)), heartbeat_at=now)
    if not claimed:
        return 0  # already claimed by a redelivered task, cancelled, or finished
    run = JudgeRun.objects.get(pk=run_id)
    pending = _pending_item_ids(run)
    size = judge_chunk_size(run.judge_version)
    chunks = [pending[i:i + size] for i in range(0, len(pending), size)]
    for chunk in chunks:
        judge_run_chunk_task.delay(run_id, chunk)
    if not chunks:
        judge_run_refresh(run_id=run_id)
    return len(chunks)


def _judge_items(items: list[Item]) -> list[JudgeItem]:
    return [JudgeItem(item_id=i.pk, query=i.query.text, title=i.document.title, body=i.document.body,
                      url=i.document.url) for i in items]


def _precedent_examples(run: JudgeRun, items: list[Item]) -> dict[int, list]:
    version = run.judge_version
    if not version.precedent_k or run.precedent_set is None:
        return {i.pk: [] for i in items}
    selected = precedents_select_many(
        policy=version.policy_version.policy, k=version.precedent_k, precedent_set=run.precedent_set,
        queries=[SelectionQuery(i.query.text, f"{i.document.title}\n{i.document.body[:2000]}") for i in items],
    )
    return {item.pk: chosen for item, chosen in zip(items, selected)}


def _judgment_from_outcome(run: JudgeRun, item: Item, outcome: JudgeOutcome, precedent_ids: list[int],
                           cache_key: str) -> Judgment:
    from .costs import judgment_cost

    version = run.judge_version
    return Judgment(
        run=run, item=item, status=Judgment.Status.OK if outcome.ok else Judgment.Status.ERROR,
        labels=outcome.labels if outcome.ok else None, rationale=outcome.rationale,
        error_kind=outcome.error_kind or "", error_message=outcome.error_message[:2000],
        prompt=outcome.prompt, raw_response=outcome.raw_response[:20_000], tokens_in=outcome.tokens_in,
        tokens_out=outcome.tokens_out, cost=judgment_cost(version, outcome),
        latency_ms=outcome.latency_ms, attempts=outcome.attempts, repaired=outcome.repaired,
        judge_version=version, policy_version_id=version.policy_version_id,
        rubric_hash=version.policy_version.rubric_hash, precedent_set=run.precedent_set,
        precedent_ids=precedent_ids, item_hash=item.hash, cache_key=cache_key,
        model_hash=str(outcome.extra.get("model_hash", ""))[:64],
    )


def _copy_cached(run: JudgeRun, items: dict[int, Item], keys: dict[int, str]) -> set[int]:
    """Reuse judgments with the same prompt key (cost 0, recorded as cached); returns the item ids reused."""
    if run.bypass_cache:
        return set()
    hits: dict[str, Judgment] = {}
    for j in (Judgment.objects.filter(cache_key__in=set(keys.values()), status=Judgment.Status.OK,
                                      cached_from__isnull=True).exclude(run=run).order_by("id")):
        hits.setdefault(j.cache_key, j)
    reused = {item_id for item_id, key in keys.items() if key in hits}
    insert_ignoring_conflicts([
        Judgment(run=run, item=items[item_id], status=Judgment.Status.OK, labels=src.labels, rationale=src.rationale,
                 prompt=src.prompt, raw_response=src.raw_response, tokens_in=0, tokens_out=0, cost=Decimal(0),
                 latency_ms=0, attempts=0, judge_version=run.judge_version,
                 policy_version_id=run.judge_version.policy_version_id, rubric_hash=src.rubric_hash,
                 precedent_set=run.precedent_set, precedent_ids=src.precedent_ids, item_hash=src.item_hash,
                 cache_key=keys[item_id], cached_from=src, model_hash=src.model_hash)
        for item_id, src in ((i, hits[keys[i]]) for i in sorted(reused))
    ])
    return reused


def _backend_for(version: JudgeVersion):
    spec = version.spec
    if spec.uses_student:
        from distill.selectors import student_model_path

        return get_backend(version.backend, model_dir=student_model_path(version.student_model),
                           model_hash=version.student_model.model_hash)
    endpoint = settings.SAGE_JUDGE_ENDPOINTS.get(version.endpoint_name)
    if endpoint is None:
        # The web server knew the endpoint (the version was saved); this worker was set up otherwise.
        known = ", ".join(sorted(settings.SAGE_JUDGE_ENDPOINTS)) or "none"
        raise JudgeError(f"Endpoint {version.endpoint_name!r} is not configured on this worker (it knows: {known}); "
                         "give every worker the web server's SAGE_ENDPOINTS and SAGE_ENDPOINT_* variables.")
    return get_backend(version.backend, base_url=endpoint["base_url"], api_key=endpoint["api_key"],
                       client=endpoint.get("client", "direct"))


def judge_run_chunk(*, run_id: int, item_ids: list[int]) -> int:
    """Judge the items of one chunk that have no judgment in this run yet; returns how many were sent."""
    # A chunk that starts proves the run alive; the same UPDATE tells whether it still runs.
    if not JudgeRun.objects.filter(pk=run_id, status=JudgeRun.Status.RUNNING).update(heartbeat_at=timezone.now()):
        return 0  # cancelled, failed or finished meanwhile
    run = JudgeRun.objects.select_related("judge_version__policy_version__policy", "judge_version__student_model",
                                          "precedent_set").get(pk=run_id)
    pending_ids = _pending_item_ids(run, item_ids)
    judged = _judge_with_backend(run, pending_ids) if pending_ids else 0
    judge_run_refresh(run_id=run_id)
    return judged


# The chunk's items are loaded, prompted and looked up in the cache in batches while the engine
# already judges the first ones: the first batch is one wave of concurrent calls, so the first
# requests leave within milliseconds of the chunk's start, and the rest follow in larger batches
# (one items query, one precedent selection, one cache lookup each) while the first wave is in flight.
FIRST_BATCH_MIN = 16
BATCH_ITEMS = 256


@dataclass
class _Prepared:
    """What the writer needs of each item sent: set by the producer before the request leaves."""

    item: Item
    precedent_ids: list[int]
    cache_key: str


def _prepare_batches(run: JudgeRun, item_ids: list[int], config: JudgeConfig, prepared: dict[int, _Prepared],
                     sent: list[int]) -> Iterator[JudgeRequest]:
    """Yield the requests of `item_ids` not served from the cache, batch by batch, in chunk order.

    Runs lazily on the caller's thread (the engine pulls a little ahead of its workers), so it may
    use the ORM. Fills `prepared` for each request before yielding it, and counts it in `sent`.
    """
    version = run.judge_version
    policy = version.policy_version
    rubric = policy.parsed_rubric()
    first = max(FIRST_BATCH_MIN, config.concurrency)
    bounds = [0, *range(first, len(item_ids), BATCH_ITEMS), len(item_ids)]
    for lo, hi in zip(bounds, bounds[1:]):
        batch_ids = item_ids[lo:hi]
        loaded = Item.objects.filter(pk__in=batch_ids).select_related("query", "document").in_bulk()
        items = [loaded[pk] for pk in batch_ids if pk in loaded]
        if version.spec.prompt_based:
            examples = _precedent_examples(run, items)
            requests = []
            for judge_item in _judge_items(items):
                shown = [PrecedentExample(query=p.query, title=p.title, body=p.body, labels=p.labels,
                                          rationale=p.rationale, clause=p.clause) for p in examples[judge_item.item_id]]
                requests.append(build_request(policy.text, rubric, shown, judge_item, config))
            precedent_ids = {item_id: [p.pk for p in chosen] for item_id, chosen in examples.items()}
            keys = {r.item_id: _prompt_cache_key(version, r) for r in requests}
        else:
            # The backend reads the item's texts: no prompt is built and no precedents are selected.
            requests = [JudgeRequest(item_id=i.item_id, messages=[], schema={}, rubric=rubric, item=i)
                        for i in _judge_items(items)]
            precedent_ids = {i.pk: [] for i in items}
            keys = {i.pk: _model_cache_key(version, i.hash) for i in items}
        by_id = {i.pk: i for i in items}
        reused = _copy_cached(run, by_id, keys)
        for request in requests:
            if request.item_id in reused:
                continue
            prepared[request.item_id] = _Prepared(by_id[request.item_id], precedent_ids[request.item_id],
                                                  keys[request.item_id])
            sent.append(request.item_id)
            yield request


def _judge_with_backend(run: JudgeRun, item_ids: list[int]) -> int:
    """Load, prompt and cache-check the items batch by batch, send what the cache does not hold and
    write the outcomes in bulk; returns how many were sent."""
    version = run.judge_version
    config = judge_config(version)
    prepared: dict[int, _Prepared] = {}
    sent: list[int] = []
    requests = _prepare_batches(run, item_ids, config, prepared, sent)
    # The first request before the backend: a chunk the cache serves whole loads no model (a
    # student's takes seconds) and starts no engine, as before.
    first = next(requests, None)
    if first is None:
        return 0
    requests = itertools.chain([first], requests)
    buffer: list[Judgment] = []

    last = {"flush": time.monotonic(), "refresh": time.monotonic()}

    def flush() -> None:
        if buffer:
            insert_ignoring_conflicts(buffer)  # COPY on PostgreSQL: the least CPU the engine's thread waits on
            buffer.clear()
        last["flush"] = time.monotonic()
        # Keep the progress bar moving with slow models too, without an aggregate per outcome. The
        # refresh writes the heartbeat too (and `cancelled` does while nothing arrives), so a flush
        # needs no UPDATE of its own.
        if time.monotonic() - last["refresh"] > REFRESH_EVERY_S:
            judge_run_refresh(run_id=run.pk)
            last["refresh"] = time.monotonic()

    def on_outcome(outcome: JudgeOutcome) -> None:
        if not outcome.ok:  # one line per recorded error, findable by its item_id (sage/logging.py)
            logger.info("item ended in a recorded error: %s: %s", outcome.error_kind, outcome.error_message[:300],
                        extra={"item_id": outcome.item_id})
        item = prepared.pop(outcome.item_id)
        buffer.append(_judgment_from_outcome(run, item.item, outcome, item.precedent_ids, item.cache_key))
        # Batches of FLUSH_EVERY when judgments pour in; at least once a second when they trickle.
        if len(buffer) >= FLUSH_EVERY or time.monotonic() - last["flush"] > FLUSH_EVERY_S:
            flush()

    last_check = {"at": 0.0, "beat": time.monotonic(), "stop": False}

    def cancelled() -> bool:
        # One cheap query a second at most, however many outcomes arrive. Every HEARTBEAT_EVERY_S it
        # is an UPDATE of the heartbeat instead, so a chunk waiting on a slow model is not taken for
        # a dead one by the stall sweep.
        now = time.monotonic()
        if now - last_check["at"] > 1.0:
            last_check["at"] = now
            running = JudgeRun.objects.filter(pk=run.pk, status=JudgeRun.Status.RUNNING)
            if now - last_check["beat"] > HEARTBEAT_EVERY_S:
                last_check["beat"] = now
                last_check["stop"] = not running.update(heartbeat_at=timezone.now())
            else:
                last_check["stop"] = not running.exists()
        return last_check["stop"]

    broker = settings.CELERY_BROKER_URL
    limiter = make_rate_limiter(config, redis_url=broker if broker.startswith("redis") else None,
                                key=f"sage:ratelimit:judge-version:{version.pk}")
    try:
        run_requests_sync(_backend_for(version), requests, config, limiter, on_outcome, cancelled)
    finally:
        flush()
    return len(sent)


def _recount(run_id: int, **also: Any) -> None:
    """Recompute a run's counters from its judgments (never incremented, so nothing counts twice),
    writing the fields in `also` in the same UPDATE."""
    totals = Judgment.objects.filter(run_id=run_id).aggregate(
        done=Count("id"), errors=Count("id", filter=Q(status=Judgment.Status.ERROR)),
        cached=Count("id", filter=Q(cached_from__isnull=False)),
        tokens_in=Sum("tokens_in"), tokens_out=Sum("tokens_out"), cost=Sum("cost"),
    )
    JudgeRun.objects.filter(pk=run_id).update(
        done_items=totals["done"], error_items=totals["errors"], cached_items=totals["cached"],
        tokens_in=totals["tokens_in"] or 0, tokens_out=totals["tokens_out"] or 0, cost=totals["cost"] or 0, **also,
    )


# What to tell the user about the most common error kinds, beyond their names.
_ERROR_HINTS = {
    "context_length": "the prompts exceed the model's context window: shorten the policy, lower the precedents "
                      "per prompt or the document budget, or use a model with a longer context",
    "connection_error": "the endpoint could not be reached",
    "permanent": "the endpoint refused the requests; see an item's error for its message",
}


def _errors_summary(run_id: int) -> str:
    kinds = list(Judgment.objects.filter(run_id=run_id, status=Judgment.Status.ERROR).values_list("error_kind")
                 .annotate(n=Count("id")).order_by("-n", "error_kind")[:3])
    text = ", ".join(f"{kind or 'unknown'} ({n})" for kind, n in kinds)
    hint = _ERROR_HINTS.get(kinds[0][0]) if kinds else None
    return f"{text}; {hint}" if hint else text


def _ending(run: JudgeRun) -> tuple[str, str]:
    """The terminal status and message of a run whose every item has a judgment."""
    errors, done = run.error_items, run.done_items
    if not errors:
        return JudgeRun.Status.SUCCEEDED, ""
    summary = _errors_summary(run.pk)
    if errors >= done:
        return JudgeRun.Status.FAILED, f"Every item ({errors}) ended in an error: {summary}."
    if errors * 100 > done * settings.SAGE_JUDGE_ERROR_PERCENT:
        return (JudgeRun.Status.WITH_ERRORS,
                f"{errors} of {done} items ({errors * 100 // done}%) ended in an error, more than the "
                f"{settings.SAGE_JUDGE_ERROR_PERCENT}% a run may have and still succeed: {summary}.")
    return JudgeRun.Status.SUCCEEDED, f"{errors} item(s) ended in a recorded error: {summary}."


def judge_run_refresh(*, run_id: int) -> JudgeRun:
    """Recompute counters from the judgments table (a heartbeat too) and end the run when every item
    has a judgment: succeeded, finished with errors or failed by its share of errors."""
    now = timezone.now()
    _recount(run_id, heartbeat_at=now)
    run = JudgeRun.objects.get(pk=run_id)
    if run.status == JudgeRun.Status.RUNNING and run.done_items >= run.total_items:
        status, message = _ending(run)
        JudgeRun.objects.filter(pk=run_id, status=JudgeRun.Status.RUNNING).update(
            status=status, finished_at=now, message=message)
        run.refresh_from_db()
    return run


# --- the stall sweep -------------------------------------------------------------------------

@dataclass
class SweepReport:
    resumed: list[int]
    failed: list[int]
    finished: list[int]
    deferred: str = ""  # why stalled runs were left alone this time

    def __str__(self) -> str:
        if self.deferred:
            return f"Sweep deferred: {self.deferred}."
        parts = [f"{what} {', '.join(f'#{pk}' for pk in pks)}" for what, pks in
                 (("resumed", self.resumed), ("failed", self.failed), ("finished", self.finished)) if pks]
        return f"Stalled runs: {'; '.join(parts)}." if parts else "No stalled runs."


def _broker_backlog() -> int | None:
    """Judge-run task messages (execute, chunk) waiting in the run queues, or None when the broker
    cannot say. Only those: the other sweeps beat sends with this one wait there too."""
    from sage.celery import waiting_tasks

    return waiting_tasks(run_queues(), names=("judges.tasks.judge_run_execute_task", "judges.tasks.judge_run_chunk_task"))


def judge_runs_sweep(*, stall_s: int | None = None, max_resumes: int | None = None,
                     check_backlog: bool = True) -> SweepReport:
    """Resume active runs whose heartbeat is older than `stall_s`; fail those resumed `max_resumes`
    times in a row without a new judgment.

    A heartbeat stops when a worker died mid-chunk or a task message was lost (the filesystem
    broker loses the message of a killed worker; Redis redelivers it only after its visibility
    timeout). Chunks that merely wait in the queue behind other work look the same from the
    database, so while the broker holds waiting messages the sweep leaves stalled runs alone.
    Resuming queues the run's unjudged items again; a chunk that still turns up later finds them
    judged. Safe to run from several places at once: each step is a conditional UPDATE.
    """
    stall_s = settings.SAGE_JUDGE_STALL_S if stall_s is None else stall_s
    max_resumes = settings.SAGE_JUDGE_STALL_RESUMES if max_resumes is None else max_resumes
    now = timezone.now()
    cutoff = now - timedelta(seconds=stall_s)
    stale = Q(status__in=JudgeRun.ACTIVE) & (Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff))
    report = SweepReport(resumed=[], failed=[], finished=[])
    candidates = list(JudgeRun.objects.filter(stale).order_by("pk"))
    if not candidates:
        return report
    if check_backlog:
        backlog = _broker_backlog()
        if backlog:
            report.deferred = (f"{backlog} task(s) wait in the queue; runs {[r.pk for r in candidates]} may be "
                               "waiting behind them")
            return report
    from .tasks import judge_run_execute_task

    for run in candidates:
        done = Judgment.objects.filter(run=run).count()
        if run.status == JudgeRun.Status.RUNNING and done >= run.total_items:
            # The worker died between its last judgment and ending the run.
            judge_run_refresh(run_id=run.pk)
            report.finished.append(run.pk)
            continue
        resumes = run.stall_resumes + 1 if done <= run.stall_done_items else 1
        quiet = int((now - (run.heartbeat_at or run.created_at)).total_seconds())
        # Conditional on the state read above, so two sweeps never act on one run twice.
        this_run = JudgeRun.objects.filter(pk=run.pk, status=run.status, heartbeat_at=run.heartbeat_at)
        if resumes > max_resumes:
            if this_run.update(status=JudgeRun.Status.FAILED, finished_at=now, message=(
                    f"Stalled: no sign of progress for {quiet} s, and {max_resumes} automatic resume(s) "
                    f"judged nothing more ({done} of {run.total_items} items have a judgment). A worker may "
                    "keep dying on these items, or no worker is running. Judgments made are kept; Resume to "
                    "try again.")):
                _recount(run.pk)
                report.failed.append(run.pk)
            continue
        if this_run.update(status=JudgeRun.Status.QUEUED, heartbeat_at=now, stall_resumes=resumes,
                           stall_done_items=done, message=(
                               f"No sign of progress for {quiet} s: resumed automatically "
                               f"({resumes} of {max_resumes} without progress).")):
            transaction.on_commit(lambda pk=run.pk: judge_run_execute_task.delay(pk))
            report.resumed.append(run.pk)
    return report


# --- imported labels -------------------------------------------------------------------------

@dataclass
class LabelImportReport:
    rows: int
    errors: list[tuple[int, str]]
    run: JudgeRun | None = None
    skipped: int = 0  # lines for items outside the sample, with `skip_unmatched`


def judge_run_import(*, version: JudgeVersion, sample: Sample, stream: IO[bytes] | None, user: AbstractUser | None,
                     key_fields: tuple[str, str] = ("query_id", "doc_id"), skip_unmatched: bool = False,
                     transform=None, rows: Iterable[tuple[int, dict | str]] | None = None,
                     dry_run: bool = False) -> LabelImportReport:
    """Load labels produced elsewhere as a finished run of an `imported` judge: all rows or none.

    Each JSONL line: {"query_id", "doc_id", "labels": {dimension: int}, "rationale"?} where the ids
    are the query's and document's external ids; every sample item must get exactly one line. With
    `skip_unmatched`, lines for items outside the sample are skipped (a file covering a larger set);
    `transform(row) -> row` adapts another tool's row shape before validation. `rows` replaces the
    JSONL stream with (line number, row or problem) pairs (`judges.io` reads CSV, qrels and field
    mappings that way); a `dry_run` checks everything and writes nothing.
    """
    _require(user, Role.ANALYST, "import judge labels")
    if version.spec.has_model:
        raise JudgeError(f"Labels can only be imported into a judge without a model; {version} judges with a "
                         f"{version.spec.label.lower()}.")
    rubric = version.policy_version.parsed_rubric()
    items: dict[tuple[str, str], Item] = {}
    ambiguous: set[tuple[str, str]] = set()
    for i in Item.objects.filter(sample_items__sample=sample).select_related("query", "document"):
        key = (i.query.external_id, i.document.external_id)
        if key in items:
            ambiguous.add(key)
        items[key] = i
    if ambiguous:
        # A doc_id whose text changed between imports is two documents (traffic keeps what was judged),
        # so its id alone cannot say which one a line labels: refuse rather than drop one silently.
        shown = ", ".join(f"query_id={q!r} doc_id={d!r}" for q, d in sorted(ambiguous)[:5])
        raise JudgeError(f"Sample {sample.name!r} holds two texts under the same ids ({shown}"
                         f"{', …' if len(ambiguous) > 5 else ''}): their labels cannot be told apart by id. "
                         "Draw a sample without them, or import the labels into a sample of one text each.")
    errors: list[tuple[int, str]] = []
    found: dict[int, tuple[dict, str]] = {}
    count = skipped = 0
    for number, row in (rows if rows is not None else jsonl_rows(stream)):
        count += 1
        if isinstance(row, str):
            errors.append((number, row))
            continue
        if transform is not None:
            row = transform(row)
        key = tuple(str(row.get(f, "")) for f in key_fields)
        item = items.get(key)
        if item is None and skip_unmatched:
            count -= 1
            skipped += 1
            continue
        if item is None:
            errors.append((number, f"no item of sample {sample.name!r} has {key_fields[0]}={key[0]!r}, {key_fields[1]}={key[1]!r}"))
            continue
        problems = rubric.validate_labels(row.get("labels"))
        if problems:
            errors.append((number, "; ".join(problems)))
            continue
        if item.pk in found:
            errors.append((number, f"a second line for {key_fields[0]}={key[0]}, {key_fields[1]}={key[1]}"))
            continue
        found[item.pk] = (row["labels"], str(row.get("rationale") or "")[:4000])
    missing = len(items) - len(found)
    if not errors and missing:
        absent = [k for k, i in items.items() if i.pk not in found][:3]
        examples = ", ".join(f"{key_fields[0]}={k[0]} {key_fields[1]}={k[1]}" for k in absent)
        errors.append((0, f"{missing} item(s) of the sample have no line in the file, e.g. {examples}"))
    if errors or dry_run:
        return LabelImportReport(rows=count, errors=errors, skipped=skipped)
    now = timezone.now()
    with transaction.atomic():
        run = JudgeRun.objects.create(judge_version=version, sample=sample, status=JudgeRun.Status.RUNNING,
                                      total_items=len(items), created_by=user, started_at=now)
        hashes = {i.pk: i.hash for i in items.values()}
        insert_ignoring_conflicts([
            Judgment(run=run, item_id=item_id, status=Judgment.Status.OK, labels=labels, rationale=rationale,
                     judge_version=version, policy_version_id=version.policy_version_id,
                     rubric_hash=version.policy_version.rubric_hash, item_hash=hashes[item_id],
                     cache_key=_cache_key(version, None, hashes[item_id]), raw_response=json.dumps({"labels": labels}))
            for item_id, (labels, rationale) in found.items()
        ])
        run = judge_run_refresh(run_id=run.pk)
    return LabelImportReport(rows=count, errors=[], run=run, skipped=skipped)
