"""Writes of human review: queues, assignment, labels (revisioned, never overwritten), label import."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import IO, Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, IntegerField, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from policy.models import PolicyVersion
from sage.roles import Role, has_role
from sage.text import NUL
from traffic.models import Item, Sample, SampleItem
from traffic.rows import ImportRowError, decoded_lines, jsonl_objects, query_hash

from .models import MAX_RATIONALE_CHARS, Assignment, ExternalAssessor, HumanLabel, ReviewQueue


class ReviewError(Exception):
    """A problem the user can fix; the message is shown as is."""


class ReviewPermissionError(ReviewError):
    pass


class LabelError(ReviewError):
    pass


class StaleLabelError(LabelError):
    """The label being corrected is no longer the latest revision."""


# --- queues --------------------------------------------------------------------------------------

def review_queue_create(*, name: str, sample: Sample, policy_version: PolicyVersion,
                        reviewers: Iterable[AbstractBaseUser], overlap: int = 2, instructions: str = "",
                        user: AbstractBaseUser) -> ReviewQueue:
    if not has_role(user, Role.ANALYST):
        raise ReviewPermissionError("Only analysts and admins can create review queues.")
    if not policy_version.is_published:
        raise ReviewError("Label under a published policy version, not a draft.")
    if policy_version.policy.surface_id != sample.surface_id:
        raise ReviewError("The sample and the policy belong to different surfaces.")
    reviewers = list(reviewers)
    if not reviewers:
        raise ReviewError("Assign at least one reviewer.")
    if not 1 <= overlap <= 10:
        raise ReviewError("Overlap is the number of labels per item: 1 to 10.")
    if overlap > len(reviewers):
        raise ReviewError(f"An overlap of {overlap} needs at least {overlap} reviewers.")
    with transaction.atomic():
        queue = ReviewQueue.objects.create(name=name.strip()[:120] or sample.name, sample=sample,
                                           policy_version=policy_version, overlap=overlap,
                                           instructions=instructions[:10_000], created_by=user)
        queue.reviewers.set(reviewers)
    return queue


def _require_queue_reviewer(queue: ReviewQueue, user: AbstractBaseUser) -> None:
    if not has_role(user, Role.REVIEWER) or not queue.reviewers.filter(pk=user.pk).exists():
        raise ReviewPermissionError("You are not a reviewer of this queue.")


# --- assignment ----------------------------------------------------------------------------------

def _active_assignments(queue: ReviewQueue, now) -> Q:
    # A label done, or an item handed out whose time has not run out, holds one of the item's slots.
    return Q(queue=queue) & (Q(status=Assignment.Status.DONE)
                             | Q(status=Assignment.Status.ASSIGNED, expires_at__gt=now))


def assignment_next(*, queue: ReviewQueue, reviewer: AbstractBaseUser) -> Assignment | None:
    """The reviewer's open assignment, else the first item (in sample order) with a free slot that
    this reviewer has never been handed; None when nothing is left for them.

    Safe under concurrent reviewers: on PostgreSQL the candidate row is locked with SKIP LOCKED and the
    slots are recounted under the lock (the first read may predate another reviewer's commit); on
    SQLite the IMMEDIATE transaction serializes writers. The unique (queue, item, reviewer)
    constraint makes a double hand-out to the same reviewer impossible.
    """
    _require_queue_reviewer(queue, reviewer)
    ttl = timedelta(minutes=queue.assignment_minutes)
    now = timezone.now()
    current = (Assignment.objects.filter(queue=queue, reviewer=reviewer, status=Assignment.Status.ASSIGNED)
               .order_by("assigned_at").first())
    if current is not None:
        if current.expires_at <= now:
            Assignment.objects.filter(pk=current.pk).update(expires_at=now + ttl)
            current.expires_at = now + ttl
        return current
    for _attempt in range(50):
        now = timezone.now()
        with transaction.atomic():
            slots = (Assignment.objects.filter(_active_assignments(queue, now), item_id=OuterRef("item_id"))
                     .order_by().values("item_id").annotate(n=Count("id")).values("n"))
            candidates = (
                SampleItem.objects.filter(sample_id=queue.sample_id)
                .exclude(item_id__in=Assignment.objects.filter(queue=queue, reviewer=reviewer).values("item_id"))
                .annotate(taken=Coalesce(Subquery(slots, output_field=IntegerField()), 0))
                .filter(taken__lt=queue.overlap)
                .order_by("position")
            )
            if connection.vendor == "postgresql":
                candidates = candidates.select_for_update(skip_locked=True, of=("self",))
            candidate = candidates.first()
            if candidate is None:
                return None
            taken = Assignment.objects.filter(_active_assignments(queue, now), item_id=candidate.item_id).count()
            if taken >= queue.overlap:
                continue  # another reviewer took the last slot between our read and our lock
            try:
                with transaction.atomic():
                    return Assignment.objects.create(queue=queue, item_id=candidate.item_id, reviewer=reviewer,
                                                     position=candidate.position, expires_at=now + ttl)
            except IntegrityError:
                continue  # the same reviewer in another tab got this item first
    return None


def assignment_skip(*, assignment: Assignment, user: AbstractBaseUser) -> None:
    """Give the item back to the pool; this reviewer will not be handed it again."""
    if assignment.reviewer_id != user.pk:
        raise ReviewPermissionError("That item was handed to another reviewer.")
    Assignment.objects.filter(pk=assignment.pk, status=Assignment.Status.ASSIGNED).update(
        status=Assignment.Status.SKIPPED, finished_at=timezone.now())


# --- labels --------------------------------------------------------------------------------------

def _label_write(*, item_id: int, reviewer: AbstractBaseUser, policy_version: PolicyVersion, labels: Any,
                 rationale: str, source: str, created_by: AbstractBaseUser | None, queue: ReviewQueue | None = None,
                 reason: str = "", time_spent_ms: int | None = None,
                 expected_latest: HumanLabel | None = None) -> HumanLabel:
    """Insert the next revision; the previous latest only loses its `is_latest` flag."""
    rubric = policy_version.parsed_rubric()
    problems = rubric.validate_labels(labels)
    if problems:
        raise LabelError("; ".join(problems))
    rationale = (rationale or "").strip()
    if NUL in rationale:  # PostgreSQL stores no NUL (sage/text.py): a message, not a DataError
        raise LabelError("The rationale contains a NUL byte (U+0000), which cannot be stored; remove it.")
    if len(rationale) > MAX_RATIONALE_CHARS:
        raise LabelError(f"The rationale is {len(rationale):,} characters; the limit is {MAX_RATIONALE_CHARS:,}.")
    if time_spent_ms is not None:
        time_spent_ms = max(0, min(int(time_spent_ms), 24 * 3600 * 1000))
    try:
        with transaction.atomic():
            previous = (HumanLabel.objects.select_for_update()
                        .filter(item_id=item_id, reviewer=reviewer, is_latest=True).first())
            if expected_latest is not None and (previous is None or previous.pk != expected_latest.pk):
                raise StaleLabelError("This label was revised since you opened it; review the latest revision.")
            if (source == HumanLabel.Source.IMPORT and previous is not None
                    and previous.source != HumanLabel.Source.IMPORT):
                raise LabelError("An imported label never replaces a label made in the app.")
            if previous is not None:
                HumanLabel.objects.filter(pk=previous.pk).update(is_latest=False)
            return HumanLabel.objects.create(
                item_id=item_id, reviewer=reviewer, queue=queue, policy_version=policy_version,
                rubric_hash=rubric.hash, labels={key: labels[key] for key in rubric.keys},
                rationale=rationale, revision=(previous.revision + 1) if previous else 1, is_latest=True,
                supersedes=previous, source=source, reason=reason.strip()[:2000], time_spent_ms=time_spent_ms,
                created_by=created_by,
            )
    except IntegrityError:
        raise LabelError("Another revision of this label was saved at the same moment; try again.") from None


def human_label_submit(*, assignment: Assignment, labels: dict[str, int], rationale: str,
                       time_spent_ms: int | None, user: AbstractBaseUser) -> HumanLabel:
    """A reviewer labels the item handed to them (or revises it after going back)."""
    if assignment.reviewer_id != user.pk or not has_role(user, Role.REVIEWER):
        raise ReviewPermissionError("That item was handed to another reviewer.")
    queue = assignment.queue
    with transaction.atomic():
        label = _label_write(
            item_id=assignment.item_id, reviewer=user, policy_version=queue.policy_version, labels=labels,
            rationale=rationale, source=HumanLabel.Source.REVIEW, created_by=user, queue=queue,
            time_spent_ms=time_spent_ms,
            reason="" if assignment.status == Assignment.Status.ASSIGNED else "revised by the reviewer",
        )
        Assignment.objects.filter(pk=assignment.pk).update(status=Assignment.Status.DONE)
        # finished_at keeps the first labelling time: going back (B) walks assignments in that order.
        Assignment.objects.filter(pk=assignment.pk, finished_at__isnull=True).update(finished_at=timezone.now())
    return label


def human_label_correct(*, label: HumanLabel, labels: dict[str, int], rationale: str, user: AbstractBaseUser,
                        reason: str) -> HumanLabel:
    """Triage found the human wrong: a new revision, attributed to the same reviewer, written by `user`
    with a reason; the old revision stays in the history."""
    if not has_role(user, Role.REVIEWER):
        raise ReviewPermissionError("Only reviewers and admins can correct labels.")
    if not reason.strip():
        raise LabelError("Say why the label is corrected.")
    return _label_write(
        item_id=label.item_id, reviewer=label.reviewer, policy_version=label.policy_version, labels=labels,
        rationale=rationale, source=HumanLabel.Source.CORRECTION, created_by=user, queue=label.queue,
        reason=reason, expected_latest=label,
    )


# Lines of a label file read and resolved together: one statement finds the items a chunk names by hash.
LABEL_IMPORT_CHUNK = 5_000


def _label_chunks(rows: Iterable[tuple[int, dict]]) -> Iterator[tuple[list[tuple[int, dict]], ImportRowError | None]]:
    """(rows, error) in chunks of LABEL_IMPORT_CHUNK; a line that is not a JSON object ends the last
    chunk as its error, raised after the rows before it, so the first bad line is the one reported."""
    chunk: list[tuple[int, dict]] = []
    try:
        for row in rows:
            chunk.append(row)
            if len(chunk) >= LABEL_IMPORT_CHUNK:
                yield chunk, None
                chunk = []
    except ImportRowError as exc:
        yield chunk, exc
        return
    if chunk:
        yield chunk, None


def _item_ids_by_hash(hashes: set[str]) -> dict[str, int]:
    """{hash: item id} for those of `hashes` that exist. Items have no index on their hash (each
    would be a write per imported item, migration traffic/0005): this is one scan of the item table
    per chunk of a label file, not one per line."""
    if not hashes:
        return {}
    return dict(Item.objects.filter(hash__in=sorted(hashes)).values_list("hash", "id"))


def _label_row_item_ids(line_no: int, row: dict, by_hash: dict[str, int]) -> list[int]:
    """The items a label line names: by `item` (its hash, resolved for the chunk in `by_hash`) or
    by `query` + `doc_id` (more than one when several documents share that id)."""
    if row.get("item"):
        found = by_hash.get(str(row["item"]))
        return [] if found is None else [found]
    if row.get("query") and row.get("doc_id"):
        return list(Item.objects.filter(query__text_hash=query_hash(str(row["query"])),
                                        document__external_id=str(row["doc_id"])).values_list("id", flat=True)[:2])
    raise ImportRowError(line_no, "name the item: 'item' (hash), or 'query' and 'doc_id'")


class _DryRun(Exception):
    """Raised at the end of a dry run's transaction so that everything it wrote is rolled back."""


def _assessor_account(name: Any, *, line_no: int, importer: AbstractBaseUser | None,
                      cache: dict[str, AbstractBaseUser], created: list[str]) -> AbstractBaseUser:
    """The external assessor account that holds the labels a file attributes to `name`, made on
    first use. A person's account is refused: an import must never speak in a reviewer's name."""
    name = str(name).strip()
    if name in cache:
        return cache[name]
    User = get_user_model()
    try:
        UnicodeUsernameValidator()(name)
        if len(name) > 150:
            raise ValidationError("too long")
    except ValidationError:
        raise ImportRowError(line_no, f"assessor {name!r} is not a valid account name "
                                      "(letters, digits and @ . + - _, at most 150)") from None
    account = User.objects.filter(username=name).first()
    if account is None:
        try:
            # A savepoint: an import running at the same moment may make the same assessor first.
            with transaction.atomic():
                account = User(username=name, is_active=False)
                account.set_unusable_password()  # holds labels; nobody signs in as an external assessor
                account.save()
                ExternalAssessor.objects.create(user=account, created_by=importer)
        except IntegrityError:
            account = User.objects.get(username=name)  # theirs: checked below like any existing account
        else:
            created.append(name)
            cache[name] = account
            return account
    if not ExternalAssessor.objects.filter(user=account).exists():
        labelled_in_app = HumanLabel.objects.filter(reviewer=account).exclude(source=HumanLabel.Source.IMPORT).exists()
        if account.has_usable_password() or account.is_superuser or account.groups.exists() or labelled_in_app:
            raise ImportRowError(line_no, f"{name!r} is a SAGE user: imported labels are never written in a "
                                          "person's name; name an external assessor instead (e.g. "
                                          f"'{name}-import'), whose account is made on import")
        # An account made for imported labels before external assessors existed (the demo's NIST).
        ExternalAssessor.objects.create(user=account, created_by=importer)
    cache[name] = account
    return account


def human_label_import(*, source: IO[bytes] | Iterable[bytes], policy_version: PolicyVersion,
                       user: AbstractBaseUser | None, default_assessor: str = "",
                       skip_unknown_items: bool = False, dry_run: bool = False) -> dict[str, Any]:
    """Import labels from JSONL, one transaction, streaming. One object per line:

        {"assessor": "nist", "query": "...", "doc_id": "...", "labels": {"relevance": 2}, "rationale": "..."}

    Imported labels are their own source: each is held by an external assessor account named by
    `assessor` (`reviewer` is accepted as an older spelling; `default_assessor` serves lines without
    a name), made on first use and never a person's account, and records the importer as its
    writer. So an import never replaces what a reviewer labelled in the app; where a triager has
    corrected an imported label since, the correction is kept and the line counted as `kept`.

    An item is named by `item` (its hash) or by `query` + `doc_id`; `label: N` is short for the overall
    dimension. Re-importing identical labels changes nothing; a changed label becomes a new revision.
    A dry run checks every line and writes nothing (the report is the same).
    """
    if user is not None and not has_role(user, Role.ANALYST):
        raise ReviewPermissionError("Only analysts and admins can import labels.")
    rubric = policy_version.parsed_rubric()
    assessors: dict[str, AbstractBaseUser] = {}
    stats: dict[str, Any] = {"created": 0, "unchanged": 0, "skipped": 0, "kept": 0, "new_assessors": []}
    try:
        with transaction.atomic():
            for chunk, error in _label_chunks(jsonl_objects(decoded_lines(source))):
                by_hash = _item_ids_by_hash({str(row["item"]) for _, row in chunk if row.get("item")})
                for line_no, row in chunk:
                    name = row.get("assessor") or row.get("reviewer") or default_assessor
                    if not name:
                        raise ImportRowError(line_no, "missing field 'assessor' (who made this label)")
                    reviewer = _assessor_account(name, line_no=line_no, importer=user, cache=assessors,
                                                 created=stats["new_assessors"])
                    item_ids = _label_row_item_ids(line_no, row, by_hash)
                    if not item_ids:
                        if skip_unknown_items:
                            stats["skipped"] += 1
                            continue
                        raise ImportRowError(line_no, "no such item in the imported traffic")
                    if len(item_ids) > 1:
                        raise ImportRowError(line_no, "doc_id names several documents for that query; use 'item'")
                    labels = row.get("labels")
                    if labels is None and "label" in row:
                        labels = {rubric.overall.key: row["label"]}
                    problems = rubric.validate_labels(labels)
                    if problems:
                        raise ImportRowError(line_no, "; ".join(problems))
                    rationale = str(row.get("rationale") or "")
                    latest = HumanLabel.objects.filter(item_id=item_ids[0], reviewer=reviewer, is_latest=True).first()
                    if latest is not None and latest.source != HumanLabel.Source.IMPORT:
                        stats["kept"] += 1  # a person's correction outranks the file
                        continue
                    if (latest is not None and latest.policy_version_id == policy_version.pk
                            and latest.labels == labels and latest.rationale == rationale.strip()):
                        stats["unchanged"] += 1
                        continue
                    try:
                        _label_write(item_id=item_ids[0], reviewer=reviewer, policy_version=policy_version,
                                     labels=labels, rationale=rationale, source=HumanLabel.Source.IMPORT,
                                     created_by=user, reason="imported")
                    except LabelError as exc:
                        raise ImportRowError(line_no, str(exc)) from None
                    stats["created"] += 1
                if error is not None:
                    raise error
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    except ImportRowError as exc:
        raise ReviewError(f"Nothing was imported: {exc}") from None
    return stats
