"""Writes of the judges app: versions, runs (start, execute in chunks, cancel, resume), imports.

A run flows: `judge_run_start` saves a queued run and queues `judge_run_execute_task` on commit →
`judge_run_execute` claims it with a conditional UPDATE and fans pending items out in chunks →
each `judge_run_chunk` judges the items of its chunk that still have no judgment (cache first,
then the backend through the concurrent engine), writes judgments with bulk inserts that ignore
conflicts, and recomputes the run's counters from the judgments table. A redelivered chunk only
finds the items nobody judged yet, so nothing is lost or duplicated.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from policy.models import PolicyVersion
from precedent.models import PrecedentSet
from precedent.selection import SelectionQuery, precedents_select_many
from precedent.services import precedent_set_snapshot
from sage.jsonl import jsonl_rows
from sage.roles import Role, has_role
from traffic.models import Item, Sample

from .core.backends import get_backend
from .core.engine import run_requests_sync
from .core.prompt import PROMPT_TEMPLATE_VERSION, build_request, estimate_tokens
from .core.ratelimit import make_rate_limiter
from .core.types import JudgeConfig, JudgeItem, JudgeOutcome, PrecedentExample
from .models import Judge, JudgeRun, JudgeVersion, Judgment

logger = logging.getLogger(__name__)

FLUSH_EVERY = 50
FLUSH_EVERY_S = 1.0
REFRESH_EVERY_S = 2.0
VERSION_FIELDS = ("backend", "model_name", "endpoint_name", "temperature", "max_tokens", "precedent_k",
                  "doc_char_budget", "concurrency", "requests_per_minute", "tokens_per_minute", "policy_version",
                  "price_in_per_m", "price_out_per_m", "provenance")


class JudgeError(Exception):
    """A judge rule was broken; the message is shown to the user as is."""


def _require(user: AbstractUser | None, role: Role, what: str) -> None:
    if user is not None and not has_role(user, role):
        raise JudgeError(f"Only {role.value}s and admins can {what}.")


# --- judges and versions ---------------------------------------------------------------------

def _check_config(config: dict[str, Any]) -> None:
    backend = config.get("backend")
    if backend not in JudgeVersion.Backend.values:
        raise JudgeError(f"Unknown backend {backend!r}.")
    if backend == JudgeVersion.Backend.OPENAI and config.get("endpoint_name") not in settings.SAGE_JUDGE_ENDPOINTS:
        known = ", ".join(sorted(settings.SAGE_JUDGE_ENDPOINTS)) or "none"
        raise JudgeError(f"Unknown endpoint {config.get('endpoint_name')!r}; configured endpoints: {known} "
                         "(set SAGE_ENDPOINTS and SAGE_ENDPOINT_<NAME>_BASE_URL/_API_KEY).")
    if not isinstance(config.get("policy_version"), PolicyVersion) or not config["policy_version"].is_published:
        raise JudgeError("A judge applies a published policy version.")
    if not (0 <= float(config.get("temperature", 0)) <= 2):
        raise JudgeError("Temperature must be between 0 and 2.")
    if int(config.get("concurrency", 1)) < 1 or int(config.get("max_tokens", 1)) < 1:
        raise JudgeError("Concurrency and max tokens must be at least 1.")


def judge_create(*, name: str, surface, user: AbstractUser | None, description: str = "",
                 **config: Any) -> JudgeVersion:
    _require(user, Role.ANALYST, "create judges")
    config.setdefault("prompt_template_version", PROMPT_TEMPLATE_VERSION if config.get("backend") == "openai" else "")
    _check_config(config)
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
    _check_config(config)
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
class RunEstimate:
    items: int
    cached: int
    tokens_in: int
    tokens_out: int
    cost: Decimal


def _cache_key(version: JudgeVersion, precedent_set: PrecedentSet | None, item_hash: str) -> str:
    """The key of a judgment that has no prompt (imported labels): version, policy, precedents, item."""
    raw = f"{version.pk}|{version.policy_version_id}|{precedent_set.hash if precedent_set else '-'}|{item_hash}"
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
    precedent_set = precedent_set_snapshot(policy=version.policy_version.policy) if version.precedent_k else None
    # Items judged before under this very version, policy and precedent set: reused for free. (The
    # run may reuse more: any item whose exact prompt was judged before, see _prompt_cache_key.)
    cached = Judgment.objects.filter(
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
    return RunEstimate(items=len(items), cached=cached, tokens_in=tokens_in, tokens_out=tokens_out,
                       cost=version.cost(tokens_in, tokens_out).quantize(Decimal("0.0001")))


def judge_run_start(*, version: JudgeVersion, sample: Sample, user: AbstractUser | None,
                    bypass_cache: bool = False) -> JudgeRun:
    from .tasks import judge_run_execute_task

    _require(user, Role.ANALYST, "run judges")
    if version.backend == JudgeVersion.Backend.IMPORTED:
        raise JudgeError("An imported judge has no model to run; import its labels instead.")
    if sample.item_count == 0:
        raise JudgeError(f"Sample {sample.name!r} has no items.")
    if version.judge.surface_id != sample.surface_id:
        raise JudgeError("The judge and the sample belong to different surfaces.")
    precedent_set = precedent_set_snapshot(policy=version.policy_version.policy) if version.precedent_k else None
    run = JudgeRun.objects.create(judge_version=version, sample=sample, precedent_set=precedent_set,
                                  total_items=sample.item_count, bypass_cache=bypass_cache, created_by=user)
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
    """Queue the still-unjudged items of a failed, cancelled or stalled run again."""
    from .tasks import judge_run_execute_task

    _require(user, Role.ANALYST, "resume runs")
    changed = JudgeRun.objects.filter(pk=run.pk).exclude(status=JudgeRun.Status.SUCCEEDED).update(
        status=JudgeRun.Status.QUEUED, cancel_requested_at=None, finished_at=None, message="Resumed.")
    if changed:
        transaction.on_commit(lambda: judge_run_execute_task.delay(run.pk))
    return changed == 1


# --- executing -------------------------------------------------------------------------------

def _pending_item_ids(run: JudgeRun, among: Iterable[int] | None = None) -> list[int]:
    qs = Item.objects.filter(sample_items__sample_id=run.sample_id).exclude(judgments__run=run)
    if among is not None:
        qs = qs.filter(pk__in=list(among))
    return list(qs.order_by("sample_items__position").values_list("pk", flat=True))


def judge_run_execute(*, run_id: int) -> int:
    """Claim a queued run and fan its pending items out in chunks; returns the number of chunks."""
    from .tasks import judge_run_chunk_task

    now = timezone.now()
    claimed = JudgeRun.objects.filter(pk=run_id, status=JudgeRun.Status.QUEUED).update(
        status=JudgeRun.Status.RUNNING, started_at=now, heartbeat_at=now)
    if not claimed:
        return 0  # already claimed by a redelivered task, cancelled, or finished
    run = JudgeRun.objects.get(pk=run_id)
    pending = _pending_item_ids(run)
    size = settings.SAGE_JUDGE_CHUNK_SIZE
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
    version = run.judge_version
    return Judgment(
        run=run, item=item, status=Judgment.Status.OK if outcome.ok else Judgment.Status.ERROR,
        labels=outcome.labels if outcome.ok else None, rationale=outcome.rationale,
        error_kind=outcome.error_kind or "", error_message=outcome.error_message[:2000],
        prompt=outcome.prompt, raw_response=outcome.raw_response[:20_000], tokens_in=outcome.tokens_in,
        tokens_out=outcome.tokens_out, cost=version.cost(outcome.tokens_in, outcome.tokens_out),
        latency_ms=outcome.latency_ms, attempts=outcome.attempts, repaired=outcome.repaired,
        judge_version=version, policy_version_id=version.policy_version_id,
        rubric_hash=version.policy_version.rubric_hash, precedent_set=run.precedent_set,
        precedent_ids=precedent_ids, item_hash=item.hash, cache_key=cache_key,
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
    Judgment.objects.bulk_create([
        Judgment(run=run, item=items[item_id], status=Judgment.Status.OK, labels=src.labels, rationale=src.rationale,
                 prompt=src.prompt, raw_response=src.raw_response, tokens_in=0, tokens_out=0, cost=Decimal(0),
                 latency_ms=0, attempts=0, judge_version=run.judge_version,
                 policy_version_id=run.judge_version.policy_version_id, rubric_hash=src.rubric_hash,
                 precedent_set=run.precedent_set, precedent_ids=src.precedent_ids, item_hash=src.item_hash,
                 cache_key=keys[item_id], cached_from=src)
        for item_id, src in ((i, hits[keys[i]]) for i in sorted(reused))
    ], ignore_conflicts=True)
    return reused


def _backend_for(version: JudgeVersion):
    endpoint = settings.SAGE_JUDGE_ENDPOINTS[version.endpoint_name]
    return get_backend(version.backend, base_url=endpoint["base_url"], api_key=endpoint["api_key"])


def judge_run_chunk(*, run_id: int, item_ids: list[int]) -> int:
    """Judge the items of one chunk that have no judgment in this run yet; returns how many."""
    run = JudgeRun.objects.select_related("judge_version__policy_version__policy", "precedent_set").get(pk=run_id)
    if run.status != JudgeRun.Status.RUNNING:
        return 0
    pending_ids = _pending_item_ids(run, item_ids)
    items = list(Item.objects.filter(pk__in=pending_ids).select_related("query", "document"))
    judged = _judge_with_backend(run, items) if items else 0
    judge_run_refresh(run_id=run_id)
    return judged


def _judge_with_backend(run: JudgeRun, items: list[Item]) -> int:
    """Build every prompt, reuse cached judgments of identical prompts, send the rest; returns how many were sent."""
    version = run.judge_version
    policy = version.policy_version
    config = judge_config(version)
    by_id = {i.pk: i for i in items}
    examples = _precedent_examples(run, items)
    requests = []
    for judge_item in _judge_items(items):
        chosen = examples[judge_item.item_id]
        shown = [PrecedentExample(query=p.query, title=p.title, body=p.body, labels=p.labels,
                                  rationale=p.rationale, clause=p.clause) for p in chosen]
        requests.append(build_request(policy.text, policy.parsed_rubric(), shown, judge_item, config))
    precedent_ids = {item_id: [p.pk for p in chosen] for item_id, chosen in examples.items()}
    keys = {r.item_id: _prompt_cache_key(version, r) for r in requests}
    reused = _copy_cached(run, by_id, keys)
    requests = [r for r in requests if r.item_id not in reused]
    if not requests:
        return 0
    buffer: list[Judgment] = []

    last = {"flush": time.monotonic(), "refresh": time.monotonic()}

    def flush() -> None:
        if buffer:
            Judgment.objects.bulk_create(buffer, ignore_conflicts=True)
            buffer.clear()
            JudgeRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now())
        last["flush"] = time.monotonic()
        # Keep the progress bar moving with slow models too, without an aggregate per outcome.
        if time.monotonic() - last["refresh"] > REFRESH_EVERY_S:
            judge_run_refresh(run_id=run.pk)
            last["refresh"] = time.monotonic()

    def on_outcome(outcome: JudgeOutcome) -> None:
        buffer.append(_judgment_from_outcome(run, by_id[outcome.item_id], outcome, precedent_ids[outcome.item_id],
                                             keys[outcome.item_id]))
        # Batches of FLUSH_EVERY when judgments pour in; at least once a second when they trickle.
        if len(buffer) >= FLUSH_EVERY or time.monotonic() - last["flush"] > FLUSH_EVERY_S:
            flush()

    last_check = [0.0, False]

    def cancelled() -> bool:
        # One cheap query a second at most, however many outcomes arrive.
        if time.monotonic() - last_check[0] > 1.0:
            last_check[0] = time.monotonic()
            last_check[1] = not JudgeRun.objects.filter(pk=run.pk, status=JudgeRun.Status.RUNNING).exists()
        return last_check[1]

    broker = settings.CELERY_BROKER_URL
    limiter = make_rate_limiter(config, redis_url=broker if broker.startswith("redis") else None,
                                key=f"sage:ratelimit:judge-version:{version.pk}")
    try:
        run_requests_sync(_backend_for(version), requests, config, limiter, on_outcome, cancelled)
    finally:
        flush()
    return len(requests)


def judge_run_refresh(*, run_id: int) -> JudgeRun:
    """Recompute counters from the judgments table and finish the run when every item has one."""
    totals = Judgment.objects.filter(run_id=run_id).aggregate(
        done=Count("id"), errors=Count("id", filter=Q(status=Judgment.Status.ERROR)),
        cached=Count("id", filter=Q(cached_from__isnull=False)),
        tokens_in=Sum("tokens_in"), tokens_out=Sum("tokens_out"), cost=Sum("cost"),
    )
    now = timezone.now()
    JudgeRun.objects.filter(pk=run_id).update(
        done_items=totals["done"], error_items=totals["errors"], cached_items=totals["cached"],
        tokens_in=totals["tokens_in"] or 0, tokens_out=totals["tokens_out"] or 0, cost=totals["cost"] or 0,
        heartbeat_at=now,
    )
    run = JudgeRun.objects.get(pk=run_id)
    if run.status == JudgeRun.Status.RUNNING and run.done_items >= run.total_items:
        JudgeRun.objects.filter(pk=run_id, status=JudgeRun.Status.RUNNING).update(
            status=JudgeRun.Status.SUCCEEDED, finished_at=now,
            message=f"{run.error_items} item(s) ended in a recorded error." if run.error_items else "",
        )
        run.refresh_from_db()
    return run


# --- imported labels -------------------------------------------------------------------------

@dataclass
class LabelImportReport:
    rows: int
    errors: list[tuple[int, str]]
    run: JudgeRun | None = None


def judge_run_import(*, version: JudgeVersion, sample: Sample, stream: IO[bytes], user: AbstractUser | None,
                     key_fields: tuple[str, str] = ("query_id", "doc_id"), skip_unmatched: bool = False,
                     transform=None) -> LabelImportReport:
    """Load labels produced elsewhere as a finished run of an `imported` judge: all rows or none.

    Each JSONL line: {"query_id", "doc_id", "labels": {dimension: int}, "rationale"?} where the ids
    are the query's and document's external ids; every sample item must get exactly one line. With
    `skip_unmatched`, lines for items outside the sample are skipped (a file covering a larger set);
    `transform(row) -> row` adapts another tool's row shape before validation.
    """
    _require(user, Role.ANALYST, "import judge labels")
    if version.backend != JudgeVersion.Backend.IMPORTED:
        raise JudgeError("Labels can only be imported into an 'imported' judge.")
    rubric = version.policy_version.parsed_rubric()
    items = {(i.query.external_id, i.document.external_id): i for i in
             Item.objects.filter(sample_items__sample=sample).select_related("query", "document")}
    errors: list[tuple[int, str]] = []
    rows: dict[int, tuple[dict, str]] = {}
    count = 0
    for number, row in jsonl_rows(stream):
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
            continue
        if item is None:
            errors.append((number, f"no item of sample {sample.name!r} has {key_fields[0]}={key[0]!r}, {key_fields[1]}={key[1]!r}"))
            continue
        problems = rubric.validate_labels(row.get("labels"))
        if problems:
            errors.append((number, "; ".join(problems)))
            continue
        if item.pk in rows:
            errors.append((number, f"a second line for {key_fields[0]}={key[0]}, {key_fields[1]}={key[1]}"))
            continue
        rows[item.pk] = (row["labels"], str(row.get("rationale") or "")[:4000])
    missing = len(items) - len(rows)
    if not errors and missing:
        errors.append((0, f"{missing} item(s) of the sample have no line in the file"))
    if errors:
        return LabelImportReport(rows=count, errors=errors)
    now = timezone.now()
    with transaction.atomic():
        run = JudgeRun.objects.create(judge_version=version, sample=sample, status=JudgeRun.Status.RUNNING,
                                      total_items=len(items), created_by=user, started_at=now)
        hashes = {i.pk: i.hash for i in items.values()}
        Judgment.objects.bulk_create([
            Judgment(run=run, item_id=item_id, status=Judgment.Status.OK, labels=labels, rationale=rationale,
                     judge_version=version, policy_version_id=version.policy_version_id,
                     rubric_hash=version.policy_version.rubric_hash, item_hash=hashes[item_id],
                     cache_key=_cache_key(version, None, hashes[item_id]), raw_response=json.dumps({"labels": labels}))
            for item_id, (labels, rationale) in rows.items()
        ], batch_size=1000)
        run = judge_run_refresh(run_id=run.pk)
    return LabelImportReport(rows=count, errors=[], run=run)
