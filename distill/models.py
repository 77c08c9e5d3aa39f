"""Training sets (frozen, versioned, split by query), student models (a training run and the model it
wrote), their evaluations and promotion decisions.

A student model's files live under SAGE_DATA_DIR (`model_dir` is relative to it); the database holds
the manifest, so a page or a judgment can name exactly which weights produced a label (`model_hash`).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from judges.models import JudgeRun
from policy.models import PolicyVersion, Surface
from sage.models import HeartbeatMixin
from traffic.models import Item


class TrainingSet(models.Model):
    """A frozen, versioned set of (query, passage, target) examples with its provenance and split."""

    name = models.CharField(max_length=120)
    version = models.PositiveIntegerField(default=1)
    surface = models.ForeignKey(Surface, on_delete=models.PROTECT, related_name="training_sets")
    # The rubric it trains: every teacher run must be on this policy version's rubric.
    policy_version = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, related_name="training_sets")
    seed = models.PositiveIntegerField(default=0)
    split_fractions = models.JSONField(default=dict, help_text='{"train": 0.7, "validation": 0.15, "test": 0.15}')
    humans_outrank_teachers = models.BooleanField(default=True)
    # {split: {dimension: {value: count}}} and {split: {"examples": n, "queries": n}}.
    counts = models.JSONField(default=dict, blank=True)
    content_hash = models.CharField(max_length=64)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="trainingset_unique_version")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class TrainingSetSource(models.Model):
    class Kind(models.TextChoices):
        JUDGE_RUN = "judge_run", "Teacher judge run"
        PRECEDENTS = "precedents", "Accepted precedents"
        HUMAN_LABELS = "human_labels", "Human labels"

    training_set = models.ForeignKey(TrainingSet, on_delete=models.CASCADE, related_name="sources")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    judge_run = models.ForeignKey(JudgeRun, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    weight = models.FloatField(default=1.0)
    examples = models.PositiveIntegerField(default=0, help_text="examples this source contributed to")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(kind="judge_run", judge_run__isnull=False) | ~Q(kind="judge_run"),
                                   name="trainingsetsource_run_iff_kind"),
        ]


class TrainingExample(models.Model):
    class Split(models.TextChoices):
        TRAIN = "train", "Train"
        VALIDATION = "validation", "Validation"
        TEST = "test", "Test"

    training_set = models.ForeignKey(TrainingSet, on_delete=models.CASCADE, related_name="examples")
    # Null for a precedent, which is not a served item.
    item = models.ForeignKey(Item, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # What the split is by: the query text's hash, so no query is ever on two sides.
    query_key = models.CharField(max_length=64)
    split = models.CharField(max_length=10, choices=Split.choices)
    query = models.TextField()
    title = models.TextField(blank=True)
    body = models.TextField()
    # {dimension: [probability per level value, in the rubric's order]}: the soft target.
    targets = models.JSONField()
    # {dimension: value}: the hard label (human where humans outrank teachers, else the teachers' median).
    labels = models.JSONField()
    weight = models.FloatField(default=1.0)
    provenance = models.JSONField(default=dict, blank=True, help_text="which sources gave which labels")
    content_hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["training_set", "id"]
        constraints = [
            models.UniqueConstraint(fields=["training_set", "content_hash"], name="trainingexample_unique_content"),
        ]
        indexes = [models.Index(fields=["training_set", "split"])]


class StudentModel(HeartbeatMixin, models.Model):
    """One training run and the model it wrote."""
    STALL_SETTING = "SAGE_DISTILL_STALL_S"  # HeartbeatMixin: quiet_s, is_stalled

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Training"
        SUCCEEDED = "succeeded", "Trained"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    name = models.CharField(max_length=120, unique=True)
    training_set = models.ForeignKey(TrainingSet, on_delete=models.PROTECT, related_name="students")
    config = models.JSONField(default=dict, help_text="the training configuration (base model, heads, lengths, ...)")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    message = models.TextField(blank=True)
    # Progress, written by the training task and polled by the page.
    epoch = models.PositiveIntegerField(default=0)
    step = models.PositiveIntegerField(default=0)
    steps_total = models.PositiveIntegerField(default=0)
    # [{"step", "epoch", "loss"}...] and [{"epoch", "alpha": {dimension: value}}...] for the curves.
    history = models.JSONField(default=dict, blank=True)
    model_dir = models.CharField(max_length=500, blank=True, help_text="relative to SAGE_DATA_DIR")
    manifest = models.JSONField(default=dict, blank=True)
    model_hash = models.CharField(max_length=64, blank=True)
    train_seconds = models.FloatField(null=True, blank=True)
    resumes = models.PositiveSmallIntegerField(default=0)
    # Resumes by the stall sweep since the run last made progress, and the step it had then.
    stall_resumes = models.PositiveSmallIntegerField(default=0)
    stall_step = models.PositiveIntegerField(default=0)
    # What to do once trained and evaluated (the demo's chain): {"promote_surface": id,
    # "judge_sample": id, "judge_name": str}; each step is its own task and records its outcome in
    # `followups` ({"evaluate": "...", "promote": "...", "judge": "..."}), shown on the model page.
    pipeline = models.JSONField(default=dict, blank=True)
    followups = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def percent(self) -> int:
        if self.status == self.Status.SUCCEEDED:
            return 100
        return min(100, int(100 * self.step / self.steps_total)) if self.steps_total else 0

    @property
    def badge(self) -> str:
        if self.status == self.Status.SUCCEEDED:
            return "ok"
        if self.status in (self.Status.FAILED, self.Status.CANCELLED):
            return "bad"
        return "warn"


class StudentEvaluation(models.Model):
    """Student vs humans, teacher vs humans, student vs teacher on the training set's test queries."""

    student = models.ForeignKey(StudentModel, on_delete=models.CASCADE, related_name="evaluations")
    model_hash = models.CharField(max_length=64)
    # {"student_human": {dimension: DimensionAgreement.as_dict()}, "teacher_human": ..., "student_teacher": ...,
    #  "confusion": {...}, "items": n, "queries": n}
    figures = models.JSONField(default=dict)
    # Measured inference speed for the cost comparison.
    seconds_per_1k = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]


class PromotionBar(models.Model):
    """A surface's bar for promoting a student: on the same test items, student-human `metric` must be at
    least `ratio` x the best teacher-human `metric` on every dimension. A surface without a row uses
    settings.SAGE_DISTILL_PROMOTION_RATIO and alpha (distill.selectors.promotion_bar)."""

    class Metric(models.TextChoices):
        ALPHA = "alpha", "Krippendorff's α (ordinal)"
        KAPPA_LINEAR = "kappa_linear", "linear-weighted κ"
        KAPPA_QUADRATIC = "kappa_quadratic", "quadratic-weighted κ"

    surface = models.OneToOneField(Surface, on_delete=models.CASCADE, related_name="promotion_bar")
    metric = models.CharField(max_length=20, choices=Metric.choices, default=Metric.ALPHA)
    ratio = models.FloatField(default=0.9, help_text="student-human ≥ ratio × teacher-human, on every dimension")
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(ratio__gt=0) & Q(ratio__lte=2), name="promotionbar_ratio_range")]

    def __str__(self) -> str:
        return f"{self.surface}: {self.metric} ≥ {self.ratio} × teacher"


class PromotionDecision(models.Model):
    """A recorded decision to let (or not let) a student back judge versions on a surface."""

    student = models.ForeignKey(StudentModel, on_delete=models.CASCADE, related_name="decisions")
    evaluation = models.ForeignKey(StudentEvaluation, null=True, on_delete=models.PROTECT, related_name="+")
    surface = models.ForeignKey(Surface, on_delete=models.PROTECT, related_name="+")
    promoted = models.BooleanField()
    # True when an admin promoted a student that missed the bar; `reason` says why.
    override = models.BooleanField(default=False)
    reason = models.TextField(blank=True)
    # The bar applied and, per dimension, the figures compared and the margin.
    bar = models.JSONField(default=dict)
    figures = models.JSONField(default=dict)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    decided_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-decided_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(override=False) | ~Q(reason=""), name="promotion_override_has_reason"),
        ]
