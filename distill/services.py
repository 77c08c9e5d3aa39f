"""Writes of the distill app: training sets, training runs (start, execute, cancel, resume, fail, sweep),
evaluations and promotion decisions.

A training set is built all-or-nothing: every check (teacher runs on the set's rubric, labels for every
dimension in every split, no query on two sides, no empty split) runs before the first row is written,
inside one transaction.

A training run flows like a judge run: `student_train_start` saves a queued StudentModel and queues
`student_train_task` on commit (the `distill` queue) → `student_train_execute` claims it with a
conditional UPDATE and calls distill.core.train.train_student, whose progress callback writes the
step, the loss and validation-alpha curves and a heartbeat (every couple of seconds), and whose stop
callback reads the cancel → on success the evaluation is queued. Nothing stays "running" for ever:
the task's `on_failure` calls `student_train_fail`, and `students_sweep` (Celery beat) resumes a run
whose heartbeat stopped from its last checkpoint, then fails it if resuming makes no progress.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from judges.models import JudgeRun, Judgment
from policy.models import PolicyVersion
from precedent.models import Precedent
from sage.roles import Role, has_role
from sage_stats import consensus_of, dimension_agreement
from traffic.rows import query_hash

from .models import (
    PromotionBar,
    PromotionDecision,
    StudentEvaluation,
    StudentModel,
    TrainingExample,
    TrainingSet,
    TrainingSetSource,
)

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
DEFAULT_FRACTIONS = {"train": 0.7, "validation": 0.15, "test": 0.15}
# Progress is written at most this often (plus at every validation), and that write is the heartbeat.
PROGRESS_EVERY_S = 2.0
# The cancel flag is read at most this often.
CANCEL_CHECK_EVERY_S = 1.0
# Loss points kept for the curve; older points are thinned to every other one past this.
MAX_LOSS_POINTS = 400
TRAINABLE_RUN_STATUSES = (JudgeRun.Status.SUCCEEDED, JudgeRun.Status.WITH_ERRORS)


class DistillError(Exception):
    """A distillation rule was broken; the message is shown to the user as is."""


def _require(user: AbstractUser | None, role: Role, what: str) -> None:
    if user is not None and not has_role(user, role):
        raise DistillError(f"Only {role.value}s and admins can {what}.")


# --- training sets ---------------------------------------------------------------------------

@dataclass(frozen=True)
class TeacherSource:
    run: JudgeRun
    weight: float = 1.0


@dataclass
class _Row:
    """One example being assembled: labels by source, before targets are computed."""

    query_key: str
    query: str
    title: str
    body: str
    item_id: int | None = None
    precedent_id: int | None = None
    teacher: dict[str, list[tuple[int, float, int]]] = field(default_factory=lambda: defaultdict(list))  # dim -> (value, weight, run)
    human: dict[str, int] = field(default_factory=dict)
    precedent: dict[str, int] = field(default_factory=dict)


def _fractions(raw: dict[str, float] | None) -> dict[str, float]:
    fractions = dict(DEFAULT_FRACTIONS if raw is None else raw)
    if set(fractions) != set(SPLITS):
        raise DistillError(f"Split fractions must name exactly {', '.join(SPLITS)}.")
    try:
        fractions = {k: float(v) for k, v in fractions.items()}
    except (TypeError, ValueError):
        raise DistillError("Split fractions must be numbers.") from None
    if any(not (0 < v < 1) for v in fractions.values()):
        raise DistillError("Each split fraction must be between 0 and 1 (exclusive): every split needs queries.")
    if abs(sum(fractions.values()) - 1) > 1e-6:
        raise DistillError(f"Split fractions must add up to 1 (they add up to {sum(fractions.values()):.3f}).")
    return fractions


def split_queries(query_keys: list[str], *, seed: int, fractions: dict[str, float]) -> dict[str, str]:
    """Assign each query to one split: sorted, shuffled with `seed`, cut by the fractions (validation and
    test rounded, at least one query each when there are enough; train takes the rest)."""
    keys = sorted(set(query_keys))
    random.Random(seed).shuffle(keys)
    n = len(keys)
    n_val = max(1, round(fractions["validation"] * n)) if n >= 3 else 0
    n_test = max(1, round(fractions["test"] * n)) if n >= 3 else 0
    if n_val + n_test >= n:
        n_val, n_test = (1, 1) if n >= 3 else (0, 0)
    assignment = {}
    for i, key in enumerate(keys):
        assignment[key] = "validation" if i < n_val else "test" if i < n_val + n_test else "train"
    return assignment


def _targets(row: _Row, dims: list, *, humans_outrank: bool, human_weight: float,
             precedent_weight: float) -> tuple[dict, dict, float, dict] | None:
    """(soft targets, hard labels, weight, provenance) of one example, or None when it has no label.

    Soft target per dimension: the weighted distribution of the labels given (each teacher run with its
    weight; a human consensus with the human source's weight). Where humans outrank teachers, an item's
    human consensus is its whole target. The hard label is the human consensus where it decides, else
    the median of the labels (sage_stats.consensus_of). The example's weight is the largest weight of
    the sources that decided it.
    """
    targets: dict[str, list[float]] = {}
    labels: dict[str, int] = {}
    provenance: dict[str, Any] = {}
    weight = 0.0
    for dim in dims:
        given: list[tuple[int, float]] = []
        decided_by: list[str] = []
        if dim.key in row.precedent:
            given, decided_by = [(row.precedent[dim.key], precedent_weight)], ["precedent"]
        elif dim.key in row.human and (humans_outrank or not row.teacher.get(dim.key)):
            given, decided_by = [(row.human[dim.key], human_weight)], ["humans"]
        else:
            given = [(v, w) for v, w, _ in row.teacher.get(dim.key, [])]
            decided_by = [f"run {r}" for _, _, r in row.teacher.get(dim.key, [])]
            if dim.key in row.human:
                given.append((row.human[dim.key], human_weight))
                decided_by.append("humans")
        given = [(v, w) for v, w in given if v in dim.values and w > 0]
        if not given:
            continue
        mass = np.zeros(len(dim.values))
        for value, w in given:
            mass[dim.values.index(value)] += w
        targets[dim.key] = [round(float(x), 6) for x in mass / mass.sum()]
        labels[dim.key] = consensus_of([v for v, _ in given]) if decided_by != ["humans"] else given[0][0]
        weight = max(weight, max(w for _, w in given))
        provenance[dim.key] = {"sources": decided_by, "teachers": [[v, r] for v, _, r in row.teacher.get(dim.key, [])],
                               **({"human": row.human[dim.key]} if dim.key in row.human else {})}
    if not targets:
        return None
    return targets, labels, weight or 1.0, provenance


def training_set_build(*, name: str, policy_version: PolicyVersion, teachers: list[TeacherSource],
                       user: AbstractUser | None, include_precedents: bool = False, precedent_weight: float = 1.0,
                       include_human_labels: bool = False, human_weight: float = 1.0, humans_outrank_teachers: bool = True,
                       seed: int = 0, fractions: dict[str, float] | None = None,
                       dimensions: list[str] | None = None) -> TrainingSet:
    """Freeze a training set from teacher runs (and optionally accepted precedents and human labels).

    Items come from the teacher runs; human labels (the human consensus of calibration.selectors, one
    rule for every app) add to or replace the teachers' labels of the items they cover; precedents of
    the policy add examples of their own. The split is by query (the normalised query text), seeded;
    a precedent whose query no item has goes to train (it is curated training material). A new version
    of `name` is made unless its latest version has the same content hash, which is returned as is.
    """
    from calibration.selectors import human_consensus

    _require(user, Role.ANALYST, "build training sets")
    name = (name or "").strip()
    if not name or len(name) > 120:
        raise DistillError("A training set needs a name of 1 to 120 characters.")
    if not teachers and not include_precedents and not include_human_labels:
        raise DistillError("A training set needs at least one source: a teacher run, precedents or human labels.")
    if not teachers:
        raise DistillError("A training set needs at least one teacher judge run: its items are what the student learns.")
    if not policy_version.is_published:
        raise DistillError("A training set trains a published policy version's rubric.")
    fractions = _fractions(fractions)
    if seed < 0 or seed > 2**31:
        raise DistillError("The seed must be between 0 and 2^31.")
    for label, w in [("precedent", precedent_weight), ("human", human_weight)] + [(f"run {t.run.pk}", t.weight) for t in teachers]:
        if not (0 < float(w) <= 100):
            raise DistillError(f"The {label} weight must be above 0 and at most 100 (got {w}).")
    rubric = policy_version.parsed_rubric()
    dims = list(rubric.dimensions)
    if dimensions is not None:
        unknown = [d for d in dimensions if rubric.dimension(d) is None]
        if unknown or not dimensions:
            raise DistillError(f"Unknown dimension(s) {unknown or dimensions}; the rubric has {rubric.keys}.")
        dims = [d for d in dims if d.key in dimensions]
    seen_runs: set[int] = set()
    for t in teachers:
        run = t.run
        if run.pk in seen_runs:
            raise DistillError(f"Run {run.pk} is listed twice.")
        seen_runs.add(run.pk)
        run_rubric = run.judge_version.policy_version.rubric_hash
        if run_rubric != policy_version.rubric_hash:
            raise DistillError(f"Teacher run {run.pk} ({run.judge_version}) judged rubric {run_rubric} "
                               f"({run.judge_version.policy_version}); this training set trains rubric "
                               f"{policy_version.rubric_hash} ({policy_version}). Use runs on the same rubric.")
        if run.status not in TRAINABLE_RUN_STATUSES:
            raise DistillError(f"Teacher run {run.pk} is {run.get_status_display().lower()}; only finished runs can teach.")

    rows: dict[tuple[str, int], _Row] = {}
    for t in teachers:
        judgments = (Judgment.objects.filter(run=t.run, status=Judgment.Status.OK)
                     .select_related("item__query", "item__document").order_by("item_id"))
        for j in judgments.iterator(chunk_size=2000):
            key = ("item", j.item_id)
            row = rows.get(key)
            if row is None:
                row = rows[key] = _Row(query_key=j.item.query.text_hash, query=j.item.query.text,
                                       title=j.item.document.title, body=j.item.document.body, item_id=j.item_id)
            for dim in dims:
                value = (j.labels or {}).get(dim.key)
                if isinstance(value, int) and value in dim.values:
                    row.teacher[dim.key].append((value, float(t.weight), t.run.pk))
    human_items = 0
    if include_human_labels and rows:
        item_ids = [k[1] for k in rows]
        covered: set[int] = set()
        for dim in dims:
            ids, values, _ = human_consensus(item_ids, dim.key)
            for item_id, value in zip(ids.tolist(), values.tolist()):
                rows[("item", item_id)].human[dim.key] = int(value)
                covered.add(item_id)
        human_items = len(covered)
    precedent_count = 0
    if include_precedents:
        accepted = Precedent.objects.filter(policy=policy_version.policy, status=Precedent.Status.ACCEPTED).order_by("pk")
        for p in accepted:
            labels = {d.key: p.labels.get(d.key) for d in dims if p.labels.get(d.key) in d.values}
            if not labels:
                continue
            rows[("precedent", p.pk)] = _Row(query_key=query_hash(p.query), query=p.query, title=p.title, body=p.body,
                                             precedent_id=p.pk, precedent=labels)
            precedent_count += 1

    item_queries = {r.query_key for r in rows.values() if r.item_id is not None}
    assignment = split_queries(sorted(item_queries), seed=seed, fractions=fractions)
    examples: list[TrainingExample] = []
    per_run: dict[int, int] = defaultdict(int)
    for row in rows.values():
        built = _targets(row, dims, humans_outrank=humans_outrank_teachers, human_weight=float(human_weight),
                         precedent_weight=float(precedent_weight))
        if built is None:
            continue
        targets, labels, weight, provenance = built
        for r in {r for v in row.teacher.values() for _, _, r in v}:
            per_run[r] += 1
        split = assignment.get(row.query_key, "train")
        content = json.dumps([row.item_id, row.precedent_id, row.query_key, split, row.query, row.title, row.body,
                              targets, labels, weight], sort_keys=True, ensure_ascii=False)
        examples.append(TrainingExample(
            item_id=row.item_id, query_key=row.query_key, split=split, query=row.query, title=row.title, body=row.body,
            targets=targets, labels=labels, weight=weight,
            provenance={**({"precedent": row.precedent_id} if row.precedent_id else {}), "labels": provenance},
            content_hash=hashlib.sha256(content.encode()).hexdigest()))

    # Every check before anything is written.
    sides: dict[str, set[str]] = defaultdict(set)
    for e in examples:
        sides[e.query_key].add(e.split)
    leaked = [k for k, s in sides.items() if len(s) > 1]
    if leaked:  # cannot happen by construction; asserted because the whole evaluation rests on it
        raise DistillError(f"{len(leaked)} quer{'y is' if len(leaked) == 1 else 'ies are'} in two splits.")
    counts: dict[str, Any] = {}
    for split in SPLITS:
        in_split = [e for e in examples if e.split == split]
        if not in_split:
            raise DistillError(f"The {split} split is empty: {len(item_queries)} queries are too few for these "
                               f"fractions, or no item of the {split} queries has a label. Use more queries or other fractions.")
        counts[split] = {"examples": len(in_split), "queries": len({e.query_key for e in in_split}),
                         "human": sum(1 for e in in_split if any("humans" in p["sources"] for p in e.provenance["labels"].values())),
                         "labels": {}}
        for dim in dims:
            by_value = {str(v): 0 for v in dim.values}
            for e in in_split:
                if dim.key in e.labels:
                    by_value[str(e.labels[dim.key])] += 1
            if split != "test" and not sum(by_value.values()):
                raise DistillError(f"Dimension {dim.key!r} has no label in the {split} split: no source labels it. "
                                   "Choose the dimensions the sources label.")
            counts[split]["labels"][dim.key] = by_value
    unlabelled = [d.key for d in dims if not any(d.key in e.labels for e in examples)]
    if unlabelled:
        raise DistillError(f"Dimension(s) {unlabelled} have no label from any source.")
    counts["dimensions"] = [{"key": d.key, "values": d.values} for d in dims]
    counts["human_items"] = human_items
    counts["precedents"] = precedent_count
    set_hash = hashlib.sha256(json.dumps(
        [policy_version.rubric_hash, seed, fractions, humans_outrank_teachers, [d.key for d in dims],
         sorted(e.content_hash for e in examples)], sort_keys=True).encode()).hexdigest()

    try:
        with transaction.atomic():
            latest = TrainingSet.objects.select_for_update().filter(name=name).order_by("-version").first()
            if latest is not None and latest.content_hash == set_hash:
                return latest
            training_set = TrainingSet.objects.create(
                name=name, version=(latest.version + 1) if latest else 1, surface=policy_version.policy.surface,
                policy_version=policy_version, seed=seed, split_fractions=fractions,
                humans_outrank_teachers=humans_outrank_teachers, counts=counts, content_hash=set_hash, created_by=user)
            TrainingSetSource.objects.bulk_create(
                [TrainingSetSource(training_set=training_set, kind=TrainingSetSource.Kind.JUDGE_RUN, judge_run=t.run,
                                   weight=float(t.weight), examples=per_run.get(t.run.pk, 0)) for t in teachers]
                + ([TrainingSetSource(training_set=training_set, kind=TrainingSetSource.Kind.PRECEDENTS,
                                      weight=float(precedent_weight), examples=precedent_count)] if include_precedents else [])
                + ([TrainingSetSource(training_set=training_set, kind=TrainingSetSource.Kind.HUMAN_LABELS,
                                      weight=float(human_weight), examples=human_items)] if include_human_labels else []))
            for e in examples:
                e.training_set = training_set
            TrainingExample.objects.bulk_create(examples, batch_size=1000)
    except IntegrityError:
        raise DistillError(f"Another version of {name!r} was saved at the same moment; build it again.") from None
    return training_set


# --- training runs ---------------------------------------------------------------------------

def student_config(training_set: TrainingSet, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The StudentConfig (as a dict) for a training set: the rubric's dimensions, A's defaults, overrides."""
    from distill.core.model import StudentConfig

    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(StudentConfig.__dataclass_fields__) | ({"dimensions"} & set(overrides)))
    if unknown:
        raise DistillError(f"Unknown training setting(s): {', '.join(unknown)}.")
    try:
        config = StudentConfig(dimensions=[{"key": d["key"], "values": d["values"]} for d in training_set.counts["dimensions"]],
                               **overrides)
    except (TypeError, ValueError) as exc:
        raise DistillError(f"Invalid training settings: {exc}") from None
    return config.to_dict()


def student_train_start(*, training_set: TrainingSet, user: AbstractUser | None, config: dict[str, Any] | None = None,
                        name: str = "", pipeline: dict[str, Any] | None = None) -> StudentModel:
    """Save a queued training run of `training_set` and queue its task on the distill queue."""
    from .tasks import student_train_task

    _require(user, Role.ANALYST, "train students")
    full = student_config(training_set, config)
    name = (name or "").strip() or f"{training_set.name} v{training_set.version} student"
    if len(name) > 120:
        raise DistillError("A student's name is at most 120 characters.")
    with transaction.atomic():
        taken = set(StudentModel.objects.filter(name__startswith=name).values_list("name", flat=True))
        unique, n = name, 2
        while unique in taken:
            unique, n = f"{name} #{n}", n + 1
        student = StudentModel.objects.create(name=unique, training_set=training_set, config=full, created_by=user,
                                              heartbeat_at=timezone.now(), pipeline=pipeline or {})
        student.model_dir = f"students/{student.pk}"
        student.save(update_fields=["model_dir"])
    # A new run starts from nothing: a folder left under this id (a database restored or reset while the
    # data directory was kept) must not be taken for its checkpoint.
    leftover = student_model_dir(student)
    if leftover.exists():
        shutil.rmtree(leftover)
    transaction.on_commit(lambda: student_train_task.delay(student.pk))
    return student


def _examples(training_set: TrainingSet, split: str) -> list:
    from distill.core.model import passage_text
    from distill.core.train import Example

    return [Example(query_id=e.query_key, query=e.query, passage=passage_text(e.title, e.body), targets=e.targets,
                    weight=e.weight)
            for e in training_set.examples.filter(split=split).order_by("pk")]


def _thin(points: list[dict]) -> list[dict]:
    """Keep the loss curve within MAX_LOSS_POINTS by dropping every other old point."""
    while len(points) > MAX_LOSS_POINTS:
        points = points[::2] + ([points[-1]] if len(points) % 2 == 0 else [])
    return points


class _Progress:
    """The training callbacks: progress written at most every PROGRESS_EVERY_S (that write is the
    heartbeat, conditional on the run still running), the cancel read at most every second."""

    def __init__(self, student: StudentModel) -> None:
        self.pk = student.pk
        self.history = dict(student.history or {})
        self.history.setdefault("loss", [])
        self.history.setdefault("val", [])
        self.last_write = 0.0
        self.last_check = 0.0
        self.stop = False
        self.last = None  # the latest TrainProgress, written or not

    def reached(self) -> dict[str, Any]:
        """The latest progress as fields, for the write that ends a run (throttling may have skipped it)."""
        fields: dict[str, Any] = {"history": self.history}
        if self.last is not None:
            fields.update(epoch=self.last.epoch, step=self.last.step, steps_total=self.last.steps_total)
        return fields

    def on_progress(self, p) -> None:
        self.last = p
        if p.loss is not None:
            # A resumed run replays the steps after its checkpoint: their new points replace the old ones.
            kept = [point for point in self.history["loss"] if point["step"] < p.step]
            self.history["loss"] = _thin(kept + [{"step": p.step, "epoch": p.epoch, "loss": round(float(p.loss), 5)}])
        if p.val_alpha:
            # One validation per epoch, reported once (the checkpoint that ends an epoch is written before the
            # report, so a resumed run never reports a validated epoch again): the n-th report is epoch n.
            epoch = len(self.history["val"]) + 1
            self.history["val"] = self.history["val"] + [{"epoch": epoch, "alpha": {
                k: (None if a is None else round(float(a), 4)) for k, a in p.val_alpha.items()}}]
        now = time.monotonic()
        if p.val_alpha or now - self.last_write >= PROGRESS_EVERY_S or p.step >= p.steps_total:
            self.last_write = now
            fields = {"epoch": p.epoch, "step": p.step, "steps_total": p.steps_total, "history": self.history,
                      "heartbeat_at": timezone.now(), "message": (p.message or f"Epoch {p.epoch} of {p.epochs}.")[:500]}
            written = StudentModel.objects.filter(pk=self.pk, status=StudentModel.Status.RUNNING).update(**fields)
            self.stop = self.stop or not written

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self.stop and now - self.last_check >= CANCEL_CHECK_EVERY_S:
            self.last_check = now
            self.stop = not StudentModel.objects.filter(pk=self.pk, status=StudentModel.Status.RUNNING,
                                                        cancel_requested_at__isnull=True).exists()
        return self.stop


def student_model_dir(student: StudentModel) -> Path:
    return Path(settings.DATA_DIR) / student.model_dir


HEARTBEAT_EVERY_S = 15.0
TIMING_PAIRS = 256


def _heartbeat(student_id: int) -> threading.Event:
    """Beat for a training while its process lives, in a thread of its own: on a loaded host one step
    of a large batch can take minutes, and the stall sweep must tell a slow run from a dead worker.
    Set the returned event to stop it."""
    stop = threading.Event()

    def beat() -> None:
        from django.db import connection

        try:
            while not stop.wait(HEARTBEAT_EVERY_S):
                try:
                    StudentModel.objects.filter(pk=student_id, status=StudentModel.Status.RUNNING).update(
                        heartbeat_at=timezone.now())
                except Exception:  # noqa: BLE001 - a missed beat is harmless; the next one tries again
                    logger.warning("heartbeat of student %s failed", student_id, exc_info=True)
        finally:
            connection.close()

    threading.Thread(target=beat, name=f"student-{student_id}-heartbeat", daemon=True).start()
    return stop


def student_train_execute(*, student_id: int) -> str:
    """Claim a queued training run and train (resuming from its checkpoint when there is one).

    Returns what happened: "claimed-elsewhere", "succeeded", "cancelled".
    """
    from distill.core.train import TrainingCancelled, train_student

    from .tasks import student_evaluate_task

    now = timezone.now()
    claimed = StudentModel.objects.filter(pk=student_id, status=StudentModel.Status.QUEUED).update(
        status=StudentModel.Status.RUNNING, started_at=Coalesce(F("started_at"), Value(now)), heartbeat_at=now,
        message="Loading the base model and the examples.")
    if not claimed:
        return "claimed-elsewhere"  # a redelivered task, a cancel, or already finished
    student = StudentModel.objects.select_related("training_set").get(pk=student_id)
    from distill.core.model import StudentConfig

    config = StudentConfig.from_dict(student.config)
    if settings.SAGE_DISTILL_TORCH_THREADS and not config.num_threads:
        # The worker's own share of cores (several workers on one host); by default, every core it may use.
        config.num_threads = settings.SAGE_DISTILL_TORCH_THREADS
    out_dir = student_model_dir(student)
    out_dir.mkdir(parents=True, exist_ok=True)
    progress = _Progress(student)
    train, validation = _examples(student.training_set, "train"), _examples(student.training_set, "validation")
    beating = _heartbeat(student_id)
    try:
        result = train_student(train, validation, config, out_dir, on_progress=progress.on_progress,
                               should_stop=progress.should_stop, resume=True,
                               extra_manifest={"training_set_hash": student.training_set.content_hash,
                                               "training_set": f"{student.training_set}", "student_id": student.pk})
    except TrainingCancelled:
        StudentModel.objects.filter(pk=student_id, status=StudentModel.Status.RUNNING).update(
            status=StudentModel.Status.CANCELLED, finished_at=timezone.now(),
            message="Cancelled; the last checkpoint is kept, so Resume continues from it.")
        # Where it stopped, whoever stopped it (a cancel, or the sweep that queued it again).
        StudentModel.objects.filter(pk=student_id).update(**progress.reached())
        return "cancelled"
    except ValueError as exc:  # bad input, e.g. a dimension without targets: no retry will help
        student_train_fail(student_id=student_id, reason=f"Training refused its input: {exc}")
        return "failed"
    finally:
        beating.set()
    manifest = result.manifest
    epochs_done = len(progress.history["val"]) or config.epochs
    rel = Path(result.model_dir).resolve().relative_to(Path(settings.DATA_DIR).resolve())
    finished = StudentModel.objects.filter(pk=student_id, status=StudentModel.Status.RUNNING).update(
        status=StudentModel.Status.SUCCEEDED, finished_at=timezone.now(), model_dir=str(rel), manifest=manifest,
        model_hash=manifest.get("model_hash", ""), train_seconds=result.seconds, epoch=epochs_done,
        history={**progress.history, "best_epoch": result.best_epoch}, heartbeat_at=timezone.now(),
        message=(f"Trained {epochs_done} of {config.epochs} epochs"
                 + (" (stopped early: validation α stopped improving)" if epochs_done < config.epochs else "")
                 + f"; the model kept is epoch {result.best_epoch}'s, the best on validation."))
    if finished:
        transaction.on_commit(lambda: student_evaluate_task.delay(student_id))
        return "succeeded"
    return "cancelled"


def student_train_cancel(*, student: StudentModel, user: AbstractUser | None) -> bool:
    """Ask a queued or running training to stop; it saves a checkpoint so Resume continues from it."""
    _require(user, Role.ANALYST, "cancel training")
    now = timezone.now()
    changed = StudentModel.objects.filter(pk=student.pk, status__in=StudentModel.ACTIVE).update(
        status=StudentModel.Status.CANCELLED, cancel_requested_at=now, finished_at=now,
        message="Cancelled; the last checkpoint is kept, so Resume continues from it.")
    return changed == 1


def student_train_resume(*, student: StudentModel, user: AbstractUser | None) -> bool:
    """Queue a failed, cancelled or stalled training again; it continues from its last checkpoint."""
    from .tasks import student_train_task

    _require(user, Role.ANALYST, "resume training")
    stalled = Q(status__in=StudentModel.ACTIVE,
                heartbeat_at__lt=timezone.now() - timedelta(seconds=settings.SAGE_DISTILL_STALL_S))
    changed = StudentModel.objects.filter(pk=student.pk).filter(
        Q(status__in=(StudentModel.Status.FAILED, StudentModel.Status.CANCELLED)) | stalled).update(
        status=StudentModel.Status.QUEUED, cancel_requested_at=None, finished_at=None, heartbeat_at=timezone.now(),
        resumes=F("resumes") + 1, stall_resumes=0, message="Resumed: continues from the last checkpoint.")
    if changed:
        transaction.on_commit(lambda: student_train_task.delay(student.pk))
    return changed == 1


def student_evaluate_request(*, student: StudentModel, user: AbstractUser | None) -> None:
    """Queue an evaluation of a trained student (e.g. after human labels were added to its test items)."""
    from .tasks import student_evaluate_task

    _require(user, Role.ANALYST, "evaluate students")
    if student.status != StudentModel.Status.SUCCEEDED:
        raise DistillError("Only a trained student can be evaluated.")
    _followup(student.pk, "evaluate", "Evaluation queued.")
    transaction.on_commit(lambda: student_evaluate_task.delay(student.pk, again=True))


def student_train_fail(*, student_id: int, reason: str) -> bool:
    """End an active training as failed with `reason` (the task's on_failure, the sweep); False when it
    had already ended."""
    changed = StudentModel.objects.filter(pk=student_id, status__in=StudentModel.ACTIVE).update(
        status=StudentModel.Status.FAILED, finished_at=timezone.now(), message=reason[:4000])
    if changed:
        logger.warning("student %s failed: %s", student_id, reason)
    return changed == 1


@dataclass
class SweepReport:
    resumed: list[int]
    failed: list[int]
    deferred: str = ""

    def __str__(self) -> str:
        if self.deferred:
            return f"Sweep deferred: {self.deferred}."
        parts = [f"{what} {', '.join(f'#{pk}' for pk in pks)}" for what, pks in
                 (("resumed", self.resumed), ("failed", self.failed)) if pks]
        return f"Stalled trainings: {'; '.join(parts)}." if parts else "No stalled trainings."


def _distill_backlog() -> int | None:
    """Messages waiting in the distill queue, or None when the broker cannot say."""
    from kombu.exceptions import ChannelError

    from sage.celery import app

    try:
        with app.connection_for_write() as connection:
            try:
                return connection.default_channel.queue_declare(queue=settings.SAGE_DISTILL_QUEUE, passive=True).message_count
            except ChannelError:
                return 0
    except Exception:  # noqa: BLE001 - the sweep goes on when the broker is down
        logger.warning("could not read the distill queue's length", exc_info=True)
        return None


def students_sweep(*, stall_s: int | None = None, max_resumes: int | None = None,
                   check_backlog: bool = True) -> SweepReport:
    """Resume trainings whose heartbeat is older than `stall_s` (from their checkpoint); fail those
    resumed `max_resumes` times in a row without a step of progress. A queued training waiting behind
    another in the broker looks the same from the database, so while the distill queue holds messages
    queued ones are left alone. Each step is a conditional UPDATE, so two sweeps never act twice."""
    from .tasks import student_train_task

    stall_s = settings.SAGE_DISTILL_STALL_S if stall_s is None else stall_s
    max_resumes = settings.SAGE_DISTILL_STALL_RESUMES if max_resumes is None else max_resumes
    now = timezone.now()
    cutoff = now - timedelta(seconds=stall_s)
    candidates = list(StudentModel.objects.filter(
        Q(status__in=StudentModel.ACTIVE) & (Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)))
        .order_by("pk"))
    report = SweepReport(resumed=[], failed=[])
    if not candidates:
        return report
    if check_backlog and any(s.status == StudentModel.Status.QUEUED for s in candidates):
        backlog = _distill_backlog()
        if backlog:
            candidates = [s for s in candidates if s.status == StudentModel.Status.RUNNING]
            report.deferred = "" if candidates else f"{backlog} task(s) wait in the distill queue"
    for s in candidates:
        resumes = s.stall_resumes + 1 if s.step <= s.stall_step else 1
        quiet = int((now - (s.heartbeat_at or s.created_at)).total_seconds())
        this_one = StudentModel.objects.filter(pk=s.pk, status=s.status, heartbeat_at=s.heartbeat_at)
        if resumes > max_resumes:
            if this_one.update(status=StudentModel.Status.FAILED, finished_at=now, message=(
                    f"Stalled: no sign of life for {quiet} s, and {max_resumes} automatic resume(s) made no progress "
                    f"(step {s.step} of {s.steps_total}). A worker may keep dying on this training, or no worker takes "
                    "the distill queue. The last checkpoint is kept; Resume to try again.")):
                report.failed.append(s.pk)
            continue
        if this_one.update(status=StudentModel.Status.QUEUED, heartbeat_at=now, stall_resumes=resumes, stall_step=s.step,
                           resumes=F("resumes") + 1, message=(
                               f"No sign of life for {quiet} s: resumed automatically from the last checkpoint "
                               f"({resumes} of {max_resumes} without progress).")):
            transaction.on_commit(lambda pk=s.pk: student_train_task.delay(pk))
            report.resumed.append(s.pk)
    return report


# --- evaluation ------------------------------------------------------------------------------

def _agreement_dict(result) -> dict[str, Any]:
    return result.as_dict()


def _predict_labels(student: StudentModel, pairs: list[tuple[str, str, str]]) -> tuple[dict[str, list[int]], float]:
    """The student's decoded labels of (query, title, body) pairs per dimension, in order, and the seconds
    the prediction took (tokenisation included, loading not): through the serving path
    (distill.core.predict, what the student backend runs), so the evaluation and the cost table measure
    what judges get; while that module is absent, through the trainer's own prediction functions."""
    try:
        from distill.core.predict import Pair, load_predictor
    except ImportError:
        from distill.core.model import load_student, passage_text
        from distill.core.train import decode_probabilities, predict_probabilities

        folder = student_model_dir(student)
        model, tokenizer, _ = load_student(folder / "model" if (folder / "model").is_dir() else folder)
        started = time.perf_counter()
        probabilities = predict_probabilities(model, tokenizer, [q for q, _, _ in pairs],
                                              [passage_text(t, b) for _, t, b in pairs])
        labels = {k: v.tolist() for k, v in decode_probabilities(probabilities, model.config).items()}
        return labels, time.perf_counter() - started
    predictor = load_predictor(student_model_dir(student))
    batch = [Pair(query=q, title=t, body=b) for q, t, b in pairs]
    predictions = predictor.predict(batch)  # also warms the predictor up (a first call may build its runtime)
    # Timed on at least TIMING_PAIRS pairs (the test pairs repeated), so a small test split still gives a
    # steady seconds-per-1k for the cost table.
    timed = (batch * (TIMING_PAIRS // max(1, len(batch)) + 1))[:max(TIMING_PAIRS, len(batch))]
    started = time.perf_counter()
    predictor.predict(timed)
    seconds = (time.perf_counter() - started) * len(batch) / len(timed)
    keys = predictions[0].labels.keys() if predictions else []
    return {k: [p.labels[k] for p in predictions] for k in keys}, seconds


def student_evaluate(*, student: StudentModel, n_resamples: int = 1000) -> StudentEvaluation:
    """Evaluate a trained student on its training set's test split and store the figures.

    Student vs humans, each teacher run vs humans, student vs each teacher, per dimension, by
    sage_stats.dimension_agreement (the calibration app's statistics and query-bootstrap intervals);
    "humans" is the human consensus of calibration.selectors (gold labels such as NIST's win). The
    teacher-human figures use exactly the test items the student-human ones use. Also measures the
    student's seconds per 1k pairs (tokenisation included) for the cost table.
    """
    from calibration.selectors import human_consensus, query_ids_for, run_labels

    if student.status != StudentModel.Status.SUCCEEDED or not student.model_hash:
        raise DistillError("Only a trained student can be evaluated.")
    training_set = student.training_set
    test = list(training_set.examples.filter(split="test", item__isnull=False).order_by("item_id"))
    if not test:
        raise DistillError("The test split has no served items to evaluate on.")
    predicted, seconds = _predict_labels(student, [(e.query, e.title, e.body) for e in test])
    item_ids = np.array([e.item_id for e in test], dtype=np.int64)
    query_ids = query_ids_for(item_ids)
    teacher_runs = [s.judge_run for s in training_set.sources.filter(kind=TrainingSetSource.Kind.JUDGE_RUN)
                    .select_related("judge_run__judge_version__judge")]
    figures: dict[str, Any] = {"items": len(test), "queries": int(len(set(query_ids.tolist()))), "dimensions": {},
                               "teachers": {str(r.pk): str(r.judge_version) for r in teacher_runs}}
    for dim in training_set.counts["dimensions"]:
        key, values = dim["key"], list(dim["values"])
        student_vals = np.asarray(predicted[key], dtype=np.int64)
        h_ids, h_vals, _ = human_consensus(item_ids, key)
        common, ia, ib = np.intersect1d(item_ids, h_ids, assume_unique=True, return_indices=True)
        entry: dict[str, Any] = {"values": values, "human_items": int(common.size)}
        entry["student_human"] = _agreement_dict(dimension_agreement(
            dimension=key, a=student_vals[ia], b=h_vals[ib], groups=query_ids[ia], values=values, n_resamples=n_resamples))
        entry["teacher_human"], entry["student_teacher"] = {}, {}
        for run in teacher_runs:
            t_ids, t_vals = run_labels(run, key)
            # Teacher vs humans on the items the student-human figure uses (and the teacher labelled).
            c, ta, tb = np.intersect1d(t_ids, common, assume_unique=True, return_indices=True)
            entry["teacher_human"][str(run.pk)] = _agreement_dict(dimension_agreement(
                dimension=key, a=t_vals[ta], b=h_vals[ib][tb], groups=query_ids[ia][tb], values=values,
                n_resamples=n_resamples))
            c2, sa, sb = np.intersect1d(item_ids, t_ids, assume_unique=True, return_indices=True)
            entry["student_teacher"][str(run.pk)] = _agreement_dict(dimension_agreement(
                dimension=key, a=student_vals[sa], b=t_vals[sb], groups=query_ids[sa], values=values,
                n_resamples=n_resamples))
        figures["dimensions"][key] = entry
    figures["has_human_labels"] = any(d["human_items"] for d in figures["dimensions"].values())
    return StudentEvaluation.objects.create(student=student, model_hash=student.model_hash, figures=figures,
                                            seconds_per_1k=1000 * seconds / len(test))


# --- promotion -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bar:
    metric: str
    ratio: float
    source: str  # "surface" or "settings"

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "ratio": self.ratio, "source": self.source,
                "rule": f"student-human {self.metric} ≥ {self.ratio:g} × the best teacher-human {self.metric} "
                        "on the same test items, on every dimension"}


def promotion_bar_set(*, surface, metric: str, ratio: float, user: AbstractUser | None) -> PromotionBar:
    _require(user, Role.ADMIN, "set a promotion bar")
    if metric not in PromotionBar.Metric.values:
        raise DistillError(f"Unknown metric {metric!r}.")
    if not (0 < ratio <= 2):
        raise DistillError("The ratio must be above 0 and at most 2.")
    bar, _ = PromotionBar.objects.update_or_create(surface=surface, defaults={"metric": metric, "ratio": ratio,
                                                                               "updated_by": user})
    return bar


def promotion_check(evaluation: StudentEvaluation, bar: Bar) -> tuple[bool, dict[str, Any], list[str]]:
    """(passes, per-dimension figures, reasons it misses) of an evaluation against a bar."""
    figures: dict[str, Any] = {}
    misses: list[str] = []
    if not evaluation.figures.get("has_human_labels"):
        return False, {}, ["the test split has no human labels, so the student cannot be compared with humans"]
    for key, entry in evaluation.figures["dimensions"].items():
        student = (entry["student_human"]["estimates"] or {}).get(bar.metric)
        teachers = {run: (t["estimates"] or {}).get(bar.metric) for run, t in entry["teacher_human"].items()}
        known = {run: v for run, v in teachers.items() if v is not None}
        if student is None or not known:
            misses.append(f"{key}: {bar.metric} is undefined on the test items "
                          f"({entry['student_human'].get('reason') or 'no teacher figure'})")
            figures[key] = {"student": student, "teacher": None, "required": None, "margin": None, "passed": False}
            continue
        best_run = max(known, key=lambda r: known[r])
        teacher = known[best_run]
        required = bar.ratio * teacher
        margin = student - required
        passed = margin >= -1e-12
        figures[key] = {"student": student, "teacher": teacher, "teacher_run": best_run, "required": required,
                        "margin": margin, "passed": passed}
        if not passed:
            misses.append(f"{key}: student-human {bar.metric} {student:.3f} is {-margin:.3f} below the bar "
                          f"{required:.3f} ({bar.ratio:g} × teacher run {best_run}'s {teacher:.3f})")
    return not misses, figures, misses


def student_promote(*, student: StudentModel, surface, user: AbstractUser | None,
                    override_reason: str = "") -> PromotionDecision:
    """Record a promotion decision on `surface` from the student's latest evaluation.

    Meets the bar: promoted. Misses it: a recorded refusal naming each dimension and by how much — or,
    with `override_reason` from an admin, promoted anyway with the reason recorded (shown wherever the
    student's labels are used).
    """
    from .selectors import promotion_bar

    _require(user, Role.ANALYST, "promote students")
    override_reason = (override_reason or "").strip()
    if override_reason and user is not None and not has_role(user, Role.ADMIN):
        raise DistillError("Only admins can override the promotion bar.")
    if student.training_set.surface_id != surface.pk:
        raise DistillError(f"The student was trained for surface {student.training_set.surface}, not {surface}.")
    evaluation = student.evaluations.order_by("-created_at", "-id").first()
    if evaluation is None or evaluation.model_hash != student.model_hash:
        raise DistillError("Evaluate the student first: a promotion rests on its evaluation.")
    bar = promotion_bar(surface)
    passes, figures, misses = promotion_check(evaluation, bar)
    override = bool(override_reason) and not passes
    return PromotionDecision.objects.create(
        student=student, evaluation=evaluation, surface=surface, promoted=passes or override, override=override,
        reason=override_reason if override else "; ".join(misses), bar=bar.as_dict(),
        figures={"dimensions": figures, "misses": misses}, decided_by=user)


def student_revoke(*, student: StudentModel, surface, user: AbstractUser | None, reason: str) -> PromotionDecision:
    """Record that a promoted student may no longer back judge versions on `surface`."""
    _require(user, Role.ADMIN, "revoke a promotion")
    if not reason.strip():
        raise DistillError("Say why the promotion is revoked.")
    return PromotionDecision.objects.create(student=student, surface=surface, promoted=False, reason=reason.strip(),
                                            bar={}, figures={"revoked": True}, decided_by=user)


# --- follow-ups (evaluation after training; the demo's promote-and-judge chain) --------------

def _followup(student_id: int, step: str, text: str) -> None:
    student = StudentModel.objects.get(pk=student_id)
    student.followups = {**student.followups, step: text}
    student.save(update_fields=["followups"])


def student_after_training(*, student_id: int, again: bool = False) -> str:
    """Evaluate a freshly trained student (or, `again`, on demand: after new human labels), then, the
    first time, carry out its pipeline (promote on a surface; queue a student judge run). Each outcome,
    good or bad, is recorded on the student for its page."""
    from .tasks import student_pipeline_task

    student = StudentModel.objects.select_related("training_set").get(pk=student_id)
    first = not student.evaluations.filter(model_hash=student.model_hash).exists()
    if not first and not again:
        return "already evaluated"
    try:
        evaluation = student_evaluate(student=student)
    except DistillError as exc:
        _followup(student_id, "evaluate", f"Not evaluated: {exc}")
        return "not evaluated"
    _followup(student_id, "evaluate", f"Evaluated on {evaluation.figures['items']} test items.")
    if first and student.pipeline.get("promote_surface"):
        transaction.on_commit(lambda: student_pipeline_task.delay(student_id))
    return "evaluated"


def student_pipeline(*, student_id: int) -> str:
    """The demo's chain after evaluation: promote on the pipeline's surface and, when promoted, create a
    student judge and queue its run over the pipeline's sample (judges.services, C's backend)."""
    from policy.models import Surface

    from traffic.models import Sample

    student = StudentModel.objects.select_related("training_set", "created_by").get(pk=student_id)
    plan = student.pipeline
    surface = Surface.objects.get(pk=plan["promote_surface"])
    decision = student_promote(student=student, surface=surface, user=None)
    if decision.promoted:
        decision.decided_by = student.created_by
        decision.save(update_fields=["decided_by"])
    _followup(student_id, "promote", "Promoted." if decision.promoted else f"Not promoted: {decision.reason}")
    if not decision.promoted or not plan.get("judge_sample"):
        return "not promoted" if not decision.promoted else "promoted"
    from judges.models import Judge
    from judges.services import JudgeError, judge_create, judge_run_start

    sample = Sample.objects.get(pk=plan["judge_sample"])
    judge_name = plan.get("judge_name") or f"Student: {student.name}"
    try:
        judge = Judge.objects.filter(name=judge_name).first()
        version = judge.latest_version() if judge else judge_create(
            name=judge_name, surface=surface, user=student.created_by, backend="student", model_name=student.name,
            student_model=student, policy_version=student.training_set.policy_version, precedent_k=0,
            description=f"Distilled student {student.name} ({student.model_hash[:12]}).")
        run = judge_run_start(version=version, sample=sample, user=student.created_by)
    except (JudgeError, TypeError, ValueError) as exc:  # TypeError: a judges app without the student backend
        _followup(student_id, "judge", f"No student judge run: {exc}")
        return "promoted; judge run failed"
    _followup(student_id, "judge", f"Queued judge run #{run.pk} of {version} on {sample.name!r}.")
    return "promoted; judge run queued"
