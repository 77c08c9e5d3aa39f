"""The injection check of a judge version: does appended injection text raise its labels?

The prompt's fence (judges/core/prompt.py) tells the model that passage text is data; whether a
given model honours that is an empirical question, answered here per judge version. N real
(query, passage) pairs are judged twice through the version's own backend, prompt and engine —
the path a run takes (`build_request`, `run_requests_sync`, the version's rate limiter) — once clean
and once with one of `judges.core.injection.TEMPLATES` appended to the body (they rotate over the
pairs). The check records how often the overall label rose, the mean change, both per template, and how many of
the clean and injected passages the detector (judges.core.injection) flags.

Deliberate choices:

- no judgment cache: nothing is read from or written to the judgments table, so the injected prompt
  can never be served the clean prompt's answer (their prompts differ anyway: the body, hence the
  nonce). A check measures the judge; it labels no traffic;
- the injected pair shows the precedents selected for the clean text, so the injection is the only
  difference between the two prompts;
- only passages that fit the version's document budget with the longest template appended are used:
  truncation must not cut the injection off, or the check would measure the budget, not the model.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import transaction
from django.utils import timezone

from sage.roles import Role

from .core.engine import run_requests_sync
from .core.injection import TEMPLATES, detect_document, injected
from .core.prompt import build_request
from .core.ratelimit import make_rate_limiter
from .core.types import JudgeItem, JudgeOutcome, PrecedentExample
from .models import InjectionCheck, JudgeVersion
from .services import JudgeError, _backend_for, _require, backend_queue, judge_config

logger = logging.getLogger(__name__)

MAX_PASSAGES = 1000
RESULTS_KEPT = 1000
PROGRESS_EVERY_S = 1.0
CANDIDATES_SCANNED = 50_000  # items looked at when drawing passages from the database


@dataclass(frozen=True)
class Passage:
    query: str
    title: str
    body: str
    ref: str  # the item id or the file's doc_id, for the per-pair results


def _require_model(version: JudgeVersion) -> None:
    if not version.spec.has_model or not version.spec.prompt_based:
        raise JudgeError(f"An injection check sends prompts to a model; {version} judges with "
                         f"{version.spec.label.lower()}, which reads no prompt.")


def injection_check_start(*, version: JudgeVersion, passages: int, user: AbstractUser | None,
                          seed: int = 1) -> InjectionCheck:
    """Queue a check over `passages` pairs drawn from the items served on the judge's surface."""
    from .tasks import injection_check_task

    _require(user, Role.ANALYST, "run injection checks")
    _require_model(version)
    if not 1 <= passages <= MAX_PASSAGES:
        raise JudgeError(f"Check between 1 and {MAX_PASSAGES} passages.")
    _fail_abandoned(version)
    if InjectionCheck.objects.filter(judge_version=version, status__in=InjectionCheck.ACTIVE).exists():
        raise JudgeError(f"An injection check of {version} is already running.")
    check = InjectionCheck.objects.create(judge_version=version, passages=passages, seed=seed, created_by=user,
                                          source=f"items served on {version.judge.surface}"[:200])
    queue = backend_queue(version.spec)
    transaction.on_commit(lambda: injection_check_task.apply_async((check.pk,), queue=queue))
    return check


def _fail_abandoned(version: JudgeVersion) -> None:
    """Fail the version's active checks that showed no sign of life for SAGE_JUDGE_STALL_S (a worker
    died, or the task message was lost), so that they do not block the next check for ever."""
    from datetime import timedelta

    from django.db.models import Q
    from django.db.models.functions import Coalesce

    cutoff = timezone.now() - timedelta(seconds=settings.SAGE_JUDGE_STALL_S)
    InjectionCheck.objects.filter(judge_version=version, status__in=InjectionCheck.ACTIVE).alias(
        last=Coalesce("heartbeat_at", "started_at", "created_at")).filter(Q(last__lt=cutoff)).update(
        status=InjectionCheck.Status.FAILED, finished_at=timezone.now(),
        message=f"No sign of progress for over {settings.SAGE_JUDGE_STALL_S} s: its worker died or the task was "
                "lost. Start a new check.")


def _budget_room(version: JudgeVersion, key: str, top: int) -> int:
    longest = max(len(t.format(key=key, top=top)) for _name, t in TEMPLATES)
    return version.doc_char_budget - longest


def passages_from_items(version: JudgeVersion, n: int, seed: int) -> list[Passage]:
    """`n` pairs of the judge's surface, drawn with `seed` among unflagged items whose passage fits the
    budget with any template appended; by item hash, so the same seed draws the same pairs."""
    from django.db.models.functions import Length

    from traffic.models import Item

    rubric = version.policy_version.parsed_rubric()
    room = _budget_room(version, rubric.overall.key, rubric.overall.max_value)
    candidates = list(Item.objects.filter(entries__variant__surface_id=version.judge.surface_id,
                                          document__injection_flag=False)
                      .annotate(body_len=Length("document__body")).filter(body_len__lte=room)
                      .order_by("hash").values_list("pk", flat=True).distinct()[:CANDIDATES_SCANNED])
    chosen = random.Random(seed).sample(candidates, min(n, len(candidates)))
    items = Item.objects.filter(pk__in=chosen).select_related("query", "document").order_by("hash")
    return [Passage(query=i.query.text, title=i.document.title, body=i.document.body, ref=f"item {i.pk}") for i in items]


def passages_from_file(path: Path, n: int, seed: int, *, room: int | None = None) -> list[Passage]:
    """`n` pairs of a JSONL file with "query" and "doc" (TREC DL, as ../shared/data has it) or "body",
    optionally "title" and "doc_id"; drawn with `seed` among those that fit `room` characters."""
    rows: list[Passage] = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            body = str(row.get("doc") or row.get("body") or "")
            if not row.get("query") or not body or (room is not None and len(body) > room):
                continue
            rows.append(Passage(query=str(row["query"]), title=str(row.get("title") or ""), body=body,
                                ref=str(row.get("doc_id") or f"line {number}")))
    return random.Random(seed).sample(rows, min(n, len(rows)))


def injection_check_execute(*, check_id: int, passages: list[Passage] | None = None) -> InjectionCheck:
    """Claim a queued check, judge its pairs clean and injected, store the figures. Ends succeeded or
    failed, never raises for the judge's own trouble (an unreachable endpoint fails the check with
    the reason). `passages`: given (a file, from the command) or drawn from the surface's items."""
    now = timezone.now()
    if not InjectionCheck.objects.filter(pk=check_id, status=InjectionCheck.Status.QUEUED).update(
            status=InjectionCheck.Status.RUNNING, started_at=now):
        return InjectionCheck.objects.get(pk=check_id)
    check = InjectionCheck.objects.select_related("judge_version__policy_version__policy",
                                                  "judge_version__judge").get(pk=check_id)
    try:
        if passages is None:
            passages = passages_from_items(check.judge_version, check.passages, check.seed)
        if not passages:
            raise JudgeError("No passage to check: the surface has no unflagged item whose passage fits the "
                             "judge's document budget with the injection appended.")
        _run(check, passages)
    except Exception as exc:  # noqa: BLE001 - a check that cannot finish says why, rather than stay running
        logger.warning("injection check %s failed", check_id, exc_info=not isinstance(exc, JudgeError))
        InjectionCheck.objects.filter(pk=check_id).update(
            status=InjectionCheck.Status.FAILED, finished_at=timezone.now(),
            message=f"{type(exc).__name__}: {exc}"[:4000] if not isinstance(exc, JudgeError) else str(exc)[:4000])
    return InjectionCheck.objects.get(pk=check_id)


def injection_check_fail(*, check_id: int, reason: str) -> bool:
    """End an active check as failed (its task raised past the service, e.g. the database went away)."""
    return bool(InjectionCheck.objects.filter(pk=check_id, status__in=InjectionCheck.ACTIVE).update(
        status=InjectionCheck.Status.FAILED, finished_at=timezone.now(), message=reason[:4000]))


def _precedents(version: JudgeVersion, passages: list[Passage]) -> list[list[PrecedentExample]]:
    if not version.precedent_k:
        return [[] for _ in passages]
    from precedent.selection import SelectionQuery, precedents_select_many
    from precedent.services import precedent_set_snapshot

    policy = version.policy_version.policy
    chosen = precedents_select_many(
        policy=policy, k=version.precedent_k, precedent_set=precedent_set_snapshot(policy=policy),
        queries=[SelectionQuery(p.query, f"{p.title}\n{p.body[:2000]}") for p in passages])
    return [[PrecedentExample(query=x.query, title=x.title, body=x.body, labels=x.labels, rationale=x.rationale,
                              clause=x.clause) for x in found] for found in chosen]


def _run(check: InjectionCheck, passages: list[Passage]) -> None:
    version = check.judge_version
    _require_model(version)
    policy = version.policy_version
    rubric = policy.parsed_rubric()
    key, top = rubric.overall.key, rubric.overall.max_value
    config = judge_config(version)
    shown = _precedents(version, passages)
    requests, templates = [], []
    for n, (passage, examples) in enumerate(zip(passages, shown)):
        name, template = TEMPLATES[n % len(TEMPLATES)]
        templates.append(name)
        for variant, body in ((0, passage.body), (1, injected(passage.body, template, key=key, top=top))):
            item = JudgeItem(item_id=2 * n + variant, query=passage.query, title=passage.title, body=body, url="")
            requests.append(build_request(policy.text, rubric, examples, item, config))
    InjectionCheck.objects.filter(pk=check.pk).update(total_calls=len(requests), heartbeat_at=timezone.now())
    outcomes: dict[int, JudgeOutcome] = {}
    last = {"at": time.monotonic()}

    def on_outcome(outcome: JudgeOutcome) -> None:
        outcomes[outcome.item_id] = outcome
        if time.monotonic() - last["at"] > PROGRESS_EVERY_S:
            last["at"] = time.monotonic()
            InjectionCheck.objects.filter(pk=check.pk).update(done_calls=len(outcomes), heartbeat_at=timezone.now())

    broker = settings.CELERY_BROKER_URL
    limiter = make_rate_limiter(config, redis_url=broker if broker.startswith("redis") else None,
                                key=f"sage:ratelimit:judge-version:{version.pk}")
    run_requests_sync(_backend_for(version), requests, config, limiter, on_outcome, None)
    figures = summarise(passages, templates, outcomes, key=key, top=top)
    InjectionCheck.objects.filter(pk=check.pk).update(
        status=InjectionCheck.Status.SUCCEEDED, finished_at=timezone.now(), done_calls=len(outcomes), **figures,
        message="" if figures["n"] else "No pair got a label both clean and injected: see the errors in the results.")


def summarise(passages: list[Passage], templates: list[str], outcomes: dict[int, JudgeOutcome], *, key: str,
              top: int) -> dict[str, Any]:
    """The stored figures of a check from its outcomes (clean: item 2n, injected: 2n + 1)."""
    by_template: dict[str, dict[str, Any]] = {name: {"n": 0, "rose": 0, "deltas": []} for name, _t in TEMPLATES}
    results: list[dict[str, Any]] = []
    deltas: list[int] = []
    rose = fell = errors = flagged_clean = flagged_injected = 0
    template_text = dict(TEMPLATES)
    for n, (passage, name) in enumerate(zip(passages, templates)):
        clean, dirty = outcomes.get(2 * n), outcomes.get(2 * n + 1)
        flagged_clean += bool(detect_document(passage.title, passage.body))
        flagged_injected += bool(detect_document(passage.title, injected(passage.body, template_text[name],
                                                                         key=key, top=top)))
        labels = [o.labels.get(key) if o is not None and o.ok and o.labels else None for o in (clean, dirty)]
        row: dict[str, Any] = {"ref": passage.ref, "query": passage.query[:200], "template": name,
                               "clean": labels[0], "injected": labels[1]}
        if None in labels:
            errors += 1
            row["error"] = "; ".join(f"{which}: {o.error_kind if o is not None else 'no outcome'}"
                                     for which, o, label in zip(("clean", "injected"), (clean, dirty), labels)
                                     if label is None)
        else:
            delta = labels[1] - labels[0]
            deltas.append(delta)
            rose += delta > 0
            fell += delta < 0
            stats = by_template[name]
            stats["n"] += 1
            stats["rose"] += delta > 0
            stats["deltas"].append(delta)
        if len(results) < RESULTS_KEPT:
            results.append(row)
    return {
        "n": len(deltas), "rose": rose, "fell": fell, "errors": errors,
        "mean_delta": round(sum(deltas) / len(deltas), 4) if deltas else None,
        "by_template": {name: {"n": s["n"], "rose": s["rose"],
                               "mean_delta": round(sum(s["deltas"]) / s["n"], 4) if s["n"] else None}
                        for name, s in by_template.items()},
        "flagged_clean": flagged_clean, "flagged_injected": flagged_injected, "results": results,
    }


def latest_checks(versions: Iterable[JudgeVersion]) -> dict[int, InjectionCheck]:
    """{version id: its latest injection check} (a read, for the judge page)."""
    found: dict[int, InjectionCheck] = {}
    for check in InjectionCheck.objects.filter(judge_version__in=list(versions)).order_by("-created_at", "-pk"):
        found.setdefault(check.judge_version_id, check)
    return found
