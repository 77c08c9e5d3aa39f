"""Writes of policies: drafts edited under optimistic locking, published versions frozen."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractUser
from django.db import IntegrityError, transaction
from django.db.models import F, Max
from django.utils import timezone

from sage.roles import Role, has_role
from sage.text import nul_problem

from .markdown import extract_clauses
from .models import Policy, PolicyClause, PolicyVersion, Surface
from .rubric import RubricError, parse_rubric

# A policy is read by people and sent in every judge prompt; past this it is neither. Markdown
# rendering is CPU-bound in the length too (about 1 s per 30k characters in pure Python).
MAX_POLICY_CHARS = 50_000


class PolicyError(Exception):
    """A rule of the policy lifecycle was broken; the message is shown to the user as is."""


class StaleDraftError(PolicyError):
    """Someone saved the draft after this editor loaded it."""


class ImmutableVersionError(PolicyError):
    pass


class PolicyPermissionError(PolicyError):
    pass


def _check_nul(**fields: Any) -> None:
    """PostgreSQL stores no NUL in text or jsonb (sage/text.py): refuse it with a message, not a DataError."""
    if (problem := nul_problem(fields)) is not None:
        raise PolicyError(f"Not saved: {problem} (U+0000), which cannot be stored; remove it.")


def _check_text(text: str) -> str:
    _check_nul(text=text)
    if len(text) > MAX_POLICY_CHARS:
        raise PolicyError(f"Policy text is {len(text):,} characters; the limit is {MAX_POLICY_CHARS:,}.")
    return text


def surface_get_or_create(*, slug: str, name: str, description: str = "") -> Surface:
    surface, _ = Surface.objects.get_or_create(slug=slug, defaults={"name": name, "description": description})
    return surface


def policy_create(*, surface: Surface, slug: str, name: str, text: str, rubric: dict[str, Any],
                  user: AbstractUser) -> PolicyVersion:
    """A new policy with its first draft."""
    if not has_role(user, Role.REVIEWER):
        raise PolicyPermissionError("Only reviewers and admins can create policies.")
    _check_nul(slug=slug, name=name, text=text, rubric=rubric)
    parsed = parse_rubric(rubric)
    with transaction.atomic():
        if Policy.objects.filter(surface=surface, slug=slug).exists():
            raise PolicyError(f"A policy {slug!r} already exists on {surface.name}.")
        policy = Policy.objects.create(surface=surface, slug=slug, name=name)
        return PolicyVersion.objects.create(
            policy=policy, text=_check_text(text), rubric=parsed.to_json(), rubric_hash=parsed.hash,
            created_by=user, updated_by=user,
        )


def policy_draft_start(*, policy: Policy, user: AbstractUser, based_on: PolicyVersion | None = None) -> PolicyVersion:
    """The open draft of the policy, or a new one copied from the latest (or given) published version."""
    if not has_role(user, Role.REVIEWER):
        raise PolicyPermissionError("Only reviewers and admins can edit policies.")
    existing = policy.current_draft()
    if existing is not None:
        return existing
    source = based_on or policy.latest_published()
    if source is None:
        raise PolicyError("This policy has no published version to start a draft from.")
    try:
        with transaction.atomic():
            return PolicyVersion.objects.create(
                policy=policy, based_on=source, text=source.text, rubric=source.rubric,
                rubric_hash=source.rubric_hash, created_by=user, updated_by=user,
            )
    except IntegrityError:
        # Another reviewer opened the draft at the same moment: share theirs.
        return policy.current_draft()


def policy_draft_update(*, draft: PolicyVersion, user: AbstractUser, expected_lock_version: int,
                        text: str | None = None, rubric: dict[str, Any] | None = None,
                        change_note: str | None = None) -> PolicyVersion:
    """Save a draft only if nobody saved it since `expected_lock_version` was read.

    The conditional UPDATE is the lock: it matches no row when the version moved on, so two editors
    can never silently overwrite each other.
    """
    if not has_role(user, Role.REVIEWER):
        raise PolicyPermissionError("Only reviewers and admins can edit policies.")
    if draft.is_published:
        raise ImmutableVersionError(f"{draft} is published and cannot change; start a new draft.")
    _check_nul(text=text, rubric=rubric, change_note=change_note)
    changes: dict[str, Any] = {}
    if text is not None:
        changes["text"] = _check_text(text)
    if rubric is not None:
        parsed = parse_rubric(rubric)  # raises RubricError with field paths
        changes["rubric"] = parsed.to_json()
        changes["rubric_hash"] = parsed.hash
    if change_note is not None:
        changes["change_note"] = change_note[:5000]
    with transaction.atomic():
        updated = PolicyVersion.objects.filter(
            pk=draft.pk, status=PolicyVersion.Status.DRAFT, lock_version=expected_lock_version
        ).update(**changes, lock_version=F("lock_version") + 1, updated_by=user, updated_at=timezone.now())
        if updated != 1:
            current = PolicyVersion.objects.select_related("updated_by").get(pk=draft.pk)
            if current.is_published:
                raise ImmutableVersionError(f"{current} was published while you were editing.")
            who = current.updated_by.get_username() if current.updated_by else "someone"
            raise StaleDraftError(
                f"{who} saved this draft at {current.updated_at:%H:%M:%S} after you opened it. "
                "Your changes were not saved; they are still in the editor, and their version is shown "
                "below. Saving again replaces their version with yours."
            )
    draft.refresh_from_db()
    return draft


def _sync_clauses(version: PolicyVersion) -> None:
    version.clauses.all().delete()
    PolicyClause.objects.bulk_create(
        PolicyClause(version=version, anchor=c.anchor, title=c.title[:300], level=c.level, order=c.order)
        for c in extract_clauses(version.text)
    )


def policy_version_publish(*, draft: PolicyVersion, user: AbstractUser, change_note: str,
                           expected_lock_version: int) -> PolicyVersion:
    if not has_role(user, Role.ADMIN):
        raise PolicyPermissionError("Only admins can publish a policy version.")
    if not change_note.strip():
        raise PolicyError("Say what changed: a change note is required to publish.")
    _check_nul(change_note=change_note)
    try:
        parse_rubric(draft.rubric)
    except RubricError as exc:
        raise PolicyError(f"The rubric is invalid: {exc}") from exc
    with transaction.atomic():
        # Lock the policy row so two admins publishing at once get consecutive numbers.
        Policy.objects.select_for_update().get(pk=draft.policy_id)
        number = (draft.policy.versions.aggregate(n=Max("number"))["n"] or 0) + 1
        updated = PolicyVersion.objects.filter(
            pk=draft.pk, status=PolicyVersion.Status.DRAFT, lock_version=expected_lock_version
        ).update(
            status=PolicyVersion.Status.PUBLISHED, number=number, change_note=change_note.strip()[:5000],
            published_by=user, published_at=timezone.now(), lock_version=F("lock_version") + 1,
        )
        if updated != 1:
            raise StaleDraftError("The draft changed since you opened it (or is already published); reload and review it again.")
        draft.refresh_from_db()
        _sync_clauses(draft)
    return draft


def policy_version_delete_draft(*, draft: PolicyVersion, user: AbstractUser) -> None:
    if not has_role(user, Role.REVIEWER):
        raise PolicyPermissionError("Only reviewers and admins can discard drafts.")
    deleted, _ = PolicyVersion.objects.filter(pk=draft.pk, status=PolicyVersion.Status.DRAFT).delete()
    if not deleted:
        raise ImmutableVersionError("Published versions cannot be deleted.")


def policy_amend_at_clause(*, policy: Policy, clause: str, text: str, user: AbstractUser) -> PolicyVersion:
    """Open (or reuse) the draft and insert `text` at the end of the clause's section.

    Triage uses this to pre-fill an amendment where the disagreement happened; the reviewer then
    edits the draft and an admin publishes it like any other.
    """
    draft = policy_draft_start(policy=policy, user=user)
    lines = draft.text.splitlines()
    clauses = extract_clauses(draft.text)
    insert_at = len(lines)
    target = next((c for c in clauses if c.anchor == clause), None)
    if target is not None:
        # The section ends at the next heading of the same or a higher level.
        following = [c.line for c in clauses if c.line > target.line and c.level <= target.level]
        insert_at = following[0] if following else len(lines)
    block = ["", text.strip(), ""]
    new_text = "\n".join(lines[:insert_at] + block + lines[insert_at:]).strip() + "\n"
    return policy_draft_update(draft=draft, user=user, expected_lock_version=draft.lock_version, text=new_text)
