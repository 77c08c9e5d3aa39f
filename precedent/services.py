"""Writes of precedents: create, edit (with revisions), accept, retire, import, snapshot."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractUser
from django.db import IntegrityError, transaction
from django.db.models import F

from policy.models import Policy, PolicyVersion
from sage.roles import Role, has_role
from sage.text import nul_problem

from .models import (
    MAX_BODY_CHARS,
    MAX_QUERY_CHARS,
    MAX_RATIONALE_CHARS,
    Precedent,
    PrecedentRevision,
    PrecedentSet,
    precedent_content_hash,
)

SNAPSHOT_FIELDS = ("query", "title", "body", "url", "metadata", "labels", "rationale", "clause", "tags",
                   "status", "provenance", "source_ref", "accepted_version_id")


class PrecedentError(Exception):
    """A precedent rule was broken; `errors` maps field names to messages for forms."""

    def __init__(self, message: str, errors: dict[str, list[str]] | None = None) -> None:
        self.errors = errors or {}
        if self.errors:
            message = f"{message} " + "; ".join(f"{k}: {', '.join(v)}" for k, v in self.errors.items())
        super().__init__(message)


class StalePrecedentError(PrecedentError):
    pass


@dataclass
class PrecedentData:
    """The editable content of a precedent, validated against a policy version."""

    query: str
    body: str
    labels: dict[str, int]
    rationale: str
    title: str = ""
    url: str = ""
    clause: str = ""
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def problems(self, version: PolicyVersion) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}

        def add(name: str, message: str) -> None:
            errors.setdefault(name, []).append(message)

        for name, value, limit in (("query", self.query, MAX_QUERY_CHARS), ("body", self.body, MAX_BODY_CHARS),
                                   ("rationale", self.rationale, MAX_RATIONALE_CHARS)):
            if not value.strip():
                add(name, "is required")
            elif len(value) > limit:
                add(name, f"is {len(value):,} characters; the limit is {limit:,}")
        if len(self.title) > 500:
            add("title", "is longer than 500 characters")
        if self.url and not self.url.startswith(("http://", "https://")):
            add("url", "must start with http:// or https://")
        # A precedent may illustrate one dimension only, but it always carries the overall label.
        rubric = version.parsed_rubric()
        for problem in rubric.validate_labels(self.labels, require_all=False):
            add("labels", problem)
        if isinstance(self.labels, dict) and rubric.overall.key not in self.labels:
            add("labels", f"missing the overall label {rubric.overall.key!r}")
        if self.clause and not version.clauses.filter(anchor=self.clause).exists() and version.is_published:
            add("clause", f"no clause §{self.clause} in {version.label}")
        if not isinstance(self.tags, list) or not all(isinstance(t, str) and 0 < len(t) <= 50 for t in self.tags):
            add("tags", "must be a list of short words")
        if not isinstance(self.metadata, dict):
            add("metadata", "must be an object")
        for name in ("query", "title", "body", "url", "rationale", "clause", "tags", "metadata"):
            # PostgreSQL stores no NUL in text or jsonb (sage/text.py): refused here, not as a DataError.
            if nul_problem(getattr(self, name)) is not None:
                add(name, "contains a NUL byte (U+0000), which cannot be stored")
        return errors

    def content_hash(self) -> str:
        return precedent_content_hash(query=self.query, title=self.title, body=self.body, url=self.url,
                                      labels=self.labels, rationale=self.rationale, clause=self.clause)


def _require_reviewer(user: AbstractUser) -> None:
    if not has_role(user, Role.REVIEWER):
        raise PrecedentError("Only reviewers and admins can curate precedents.")


def _reference_version(policy: Policy) -> PolicyVersion:
    version = policy.latest_published()
    if version is None:
        raise PrecedentError(f"Policy {policy.name!r} has no published version to validate labels against.")
    return version


def _snapshot(precedent: Precedent) -> dict[str, Any]:
    return {name: getattr(precedent, name) for name in SNAPSHOT_FIELDS}


def _record_revision(precedent: Precedent, user: AbstractUser, note: str) -> None:
    PrecedentRevision.objects.create(precedent=precedent, number=precedent.revision, snapshot=_snapshot(precedent),
                                     changed_by=user, note=note[:500])


def precedent_create(*, policy: Policy, data: PrecedentData, user: AbstractUser,
                     provenance: str = Precedent.Provenance.MANUAL, source_ref: str = "",
                     accept: bool = False, note: str = "created") -> Precedent:
    _require_reviewer(user)
    version = _reference_version(policy)
    errors = data.problems(version)
    if errors:
        raise PrecedentError("The precedent is invalid.", errors)
    with transaction.atomic():
        precedent = Precedent.objects.create(
            policy=policy, query=data.query, title=data.title, body=data.body, url=data.url, metadata=data.metadata,
            labels=data.labels, rationale=data.rationale, clause=data.clause, tags=data.tags,
            provenance=provenance, source_ref=source_ref[:200], content_hash=data.content_hash(), author=user,
            status=Precedent.Status.ACCEPTED if accept else Precedent.Status.PROPOSED,
            accepted_version=version if accept else None,
        )
        _record_revision(precedent, user, note)
    return precedent


def precedent_update(*, precedent: Precedent, data: PrecedentData, user: AbstractUser, expected_revision: int,
                     note: str = "edited") -> Precedent:
    """Edit under optimistic locking; an accepted precedent is re-validated against the current version."""
    _require_reviewer(user)
    version = _reference_version(precedent.policy)
    errors = data.problems(version)
    if errors:
        raise PrecedentError("The precedent is invalid.", errors)
    changes = {
        "query": data.query, "title": data.title, "body": data.body, "url": data.url, "metadata": data.metadata,
        "labels": data.labels, "rationale": data.rationale, "clause": data.clause, "tags": data.tags,
        "content_hash": data.content_hash(),
    }
    if precedent.status == Precedent.Status.ACCEPTED:
        changes["accepted_version"] = version
    with transaction.atomic():
        updated = Precedent.objects.filter(pk=precedent.pk, revision=expected_revision).update(
            **changes, revision=F("revision") + 1
        )
        if updated != 1:
            raise StalePrecedentError("Someone changed this precedent after you opened it; reload and re-apply your edit.")
        precedent.refresh_from_db()
        _record_revision(precedent, user, note)
    return precedent


def _set_status(precedents: Iterable[Precedent], status: str, user: AbstractUser, note: str) -> int:
    _require_reviewer(user)
    changed = 0
    ids = [p.pk for p in precedents]
    with transaction.atomic():
        # Work on fresh, locked rows: callers' instances may be stale, and a failed batch must not
        # leave them looking changed.
        for precedent in Precedent.objects.select_for_update().select_related("policy").filter(pk__in=ids).order_by("id"):
            if precedent.status == status:
                continue
            accepted_version = precedent.accepted_version
            if status == Precedent.Status.ACCEPTED:
                accepted_version = _reference_version(precedent.policy)
                problems = PrecedentData(query=precedent.query, body=precedent.body, labels=precedent.labels,
                                         rationale=precedent.rationale).problems(accepted_version).get("labels", [])
                if problems:
                    raise PrecedentError(
                        f"Precedent #{precedent.pk} cannot be accepted under {accepted_version.label}: "
                        + "; ".join(problems)
                    )
            Precedent.objects.filter(pk=precedent.pk).update(
                status=status, accepted_version=accepted_version, revision=F("revision") + 1
            )
            precedent.refresh_from_db()
            _record_revision(precedent, user, note)
            changed += 1
    return changed


def precedents_accept(*, precedents: Iterable[Precedent], user: AbstractUser) -> int:
    """Accept all or none: one precedent whose labels don't fit the current rubric stops the batch."""
    return _set_status(precedents, Precedent.Status.ACCEPTED, user, "accepted")


def precedents_retire(*, precedents: Iterable[Precedent], user: AbstractUser) -> int:
    return _set_status(precedents, Precedent.Status.RETIRED, user, "retired")


def _accepted_members(policy: Policy) -> tuple[list[tuple[int, str]], str]:
    members = list(
        Precedent.objects.filter(policy=policy, status=Precedent.Status.ACCEPTED)
        .order_by("id").values_list("id", "content_hash")
    )
    return members, hashlib.sha256(json.dumps(members).encode()).hexdigest()


def precedent_set_preview(*, policy: Policy) -> PrecedentSet:
    """The snapshot of the currently accepted precedents, as `precedent_set_snapshot` would return it,
    without writing: the stored one when it exists, else an unsaved one (pk None). For pages."""
    members, digest = _accepted_members(policy)
    found = PrecedentSet.objects.filter(policy=policy, hash=digest).first()
    return found or PrecedentSet(policy=policy, hash=digest, members=[list(m) for m in members], size=len(members))


def precedent_set_snapshot(*, policy: Policy) -> PrecedentSet:
    """The set of currently accepted precedents, frozen and content-addressed (get or create)."""
    members, digest = _accepted_members(policy)
    try:
        with transaction.atomic():
            snapshot, _ = PrecedentSet.objects.get_or_create(
                policy=policy, hash=digest, defaults={"members": [list(m) for m in members], "size": len(members)}
            )
    except IntegrityError:
        snapshot = PrecedentSet.objects.get(policy=policy, hash=digest)
    return snapshot
