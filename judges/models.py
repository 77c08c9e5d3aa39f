"""Judges, their immutable versions, runs over samples, and one judgment per (run, item).

Every judgment records the judge version, policy version (hence rubric), precedent set and item
hash it was made under, so any number on a dashboard traces back to exactly what produced it.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

from judges.core.backends import BACKENDS, BackendSpec, backend_choices, backend_spec, backends_where

from policy.models import PolicyVersion, Surface
from precedent.models import PrecedentSet
from sage.models import HeartbeatMixin
from traffic.models import Item, Sample


class Judge(models.Model):
    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    surface = models.ForeignKey(Surface, on_delete=models.PROTECT, related_name="judges")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def latest_version(self) -> JudgeVersion | None:
        return self.versions.order_by("-number").first()


class JudgeVersion(models.Model):
    """An immutable judge configuration: editing a judge makes a new version."""

    # Derived from the backend registry, which names every backend (JudgeVersion.Backend.STUDENT == "student").
    Backend = models.TextChoices("Backend", [(spec.name.upper(), (spec.name, spec.label)) for spec in BACKENDS.values()])

    judge = models.ForeignKey(Judge, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    # Choices come from the backend registry (judges/core/backends.py), the one place backends are named.
    backend = models.CharField(max_length=20, choices=backend_choices)
    model_name = models.CharField(max_length=200)
    endpoint_name = models.CharField(max_length=60, blank=True,
                                     help_text="names an endpoint in settings (SAGE_ENDPOINT_<NAME>_*); no URL or key here")
    prompt_template_version = models.CharField(max_length=20, blank=True)
    temperature = models.FloatField(default=0.0)
    max_tokens = models.PositiveIntegerField(default=400)
    precedent_k = models.PositiveSmallIntegerField(default=4)
    doc_char_budget = models.PositiveIntegerField(default=4000)
    concurrency = models.PositiveSmallIntegerField(default=16)
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveIntegerField(null=True, blank=True)
    policy_version = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, related_name="judge_versions")
    price_in_per_m = models.DecimalField(max_digits=10, decimal_places=4, default=Decimal("0"),
                                         help_text="USD per 1M input tokens")
    price_out_per_m = models.DecimalField(max_digits=10, decimal_places=4, default=Decimal("0"),
                                          help_text="USD per 1M output tokens")
    provenance = models.JSONField(default=dict, blank=True, help_text="for imported labels: where they came from")
    # A backend priced per judgment rather than per token (imported labels): what 1,000 of them cost
    # where they were made, for the teacher/student cost comparison. None: not known.
    price_per_1k = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True,
                                       help_text="USD per 1,000 judgments (imported labels)")
    # The trained student a `student` version judges with; PROTECT: a model that labelled something
    # stays on record. Only a student promoted on the judge's surface may be named (judges.services).
    student_model = models.ForeignKey("distill.StudentModel", null=True, blank=True, on_delete=models.PROTECT,
                                      related_name="judge_versions")
    change_note = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["judge", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["judge", "number"], name="judgeversion_unique_number"),
            models.CheckConstraint(condition=Q(policy_version__isnull=False), name="judgeversion_has_policy"),
            # A student model backs exactly the versions of a backend that uses one.
            models.CheckConstraint(
                condition=(Q(backend__in=backends_where(uses_student=True), student_model__isnull=False)
                           | (~Q(backend__in=backends_where(uses_student=True)) & Q(student_model__isnull=True))),
                name="judgeversion_student_iff_student_backend",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.judge.name} v{self.number}"

    def cost(self, tokens_in: int, tokens_out: int) -> Decimal:
        return (self.price_in_per_m * tokens_in + self.price_out_per_m * tokens_out) / Decimal(1_000_000)

    @property
    def spec(self) -> BackendSpec:
        """The registry entry of this version's backend."""
        return backend_spec(self.backend)

    @property
    def backend_label(self) -> str:
        return self.spec.label


class JudgeRun(HeartbeatMixin, models.Model):
    STALL_SETTING = "SAGE_JUDGE_STALL_S"  # HeartbeatMixin: quiet_s, is_stalled
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        # Every item has a judgment, but more of them are errors than settings.SAGE_JUDGE_ERROR_PERCENT
        # allows: the labels that exist are real, the run as a whole is not a success.
        WITH_ERRORS = "with_errors", "Finished with errors"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    judge_version = models.ForeignKey(JudgeVersion, on_delete=models.PROTECT, related_name="runs")
    sample = models.ForeignKey(Sample, on_delete=models.PROTECT, related_name="judge_runs")
    precedent_set = models.ForeignKey(PrecedentSet, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    bypass_cache = models.BooleanField(default=False)
    total_items = models.PositiveIntegerField(default=0)
    # Progress counters are recomputed from the judgments table (every few seconds while a chunk runs
    # and after it), never incremented, so a redelivered chunk can never count twice.
    done_items = models.PositiveIntegerField(default=0)
    error_items = models.PositiveIntegerField(default=0)
    cached_items = models.PositiveIntegerField(default=0)
    tokens_in = models.BigIntegerField(default=0)
    tokens_out = models.BigIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal("0"))
    message = models.TextField(blank=True, help_text="why a run failed, or a note on how it ended")
    # The stall sweep (judge_runs_sweep): automatic resumes since the run last made progress, and
    # how many judgments it had then.
    stall_resumes = models.PositiveSmallIntegerField(default=0)
    stall_done_items = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Written while the run's tasks work (every flush, every few seconds while waiting on the model)
    # and read by the stall sweep: an active run whose heartbeat is too old is resumed or failed.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"run {self.pk}: {self.judge_version} on {self.sample}"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def ended_badly(self) -> bool:
        """Failed, or finished with too many errors: the page shows a banner."""
        return self.status in (self.Status.FAILED, self.Status.WITH_ERRORS)

    @property
    def badge(self) -> str:
        """The CSS modifier of the status badge."""
        if self.status == self.Status.SUCCEEDED:
            return "ok"
        if self.status in (self.Status.FAILED, self.Status.WITH_ERRORS, self.Status.CANCELLED):
            return "bad"
        return "warn"


    @property
    def percent(self) -> int:
        return int(100 * self.done_items / self.total_items) if self.total_items else (100 if not self.is_active else 0)

    @property
    def elapsed_s(self) -> float | None:
        if not self.started_at:
            return None
        from django.utils import timezone

        return ((self.finished_at or timezone.now()) - self.started_at).total_seconds()


class Judgment(models.Model):
    class Status(models.TextChoices):
        OK = "ok", "OK"
        ERROR = "error", "Error"

    # No index of its own: the unique (run, item) and the (run, status) index both lead with run.
    run = models.ForeignKey(JudgeRun, on_delete=models.CASCADE, related_name="judgments", db_index=False)
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="judgments")
    status = models.CharField(max_length=5, choices=Status.choices)
    labels = models.JSONField(null=True, blank=True)
    rationale = models.TextField(blank=True)
    error_kind = models.CharField(max_length=30, blank=True)
    error_message = models.TextField(blank=True)
    prompt = models.TextField(blank=True)
    raw_response = models.TextField(blank=True)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=12, decimal_places=8, default=Decimal("0"))
    latency_ms = models.FloatField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    repaired = models.BooleanField(default=False)
    # Traceability: what this judgment was made under (denormalized from the run on purpose).
    judge_version = models.ForeignKey(JudgeVersion, on_delete=models.PROTECT, related_name="+")
    policy_version = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, related_name="+")
    rubric_hash = models.CharField(max_length=16)
    precedent_set = models.ForeignKey(PrecedentSet, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    precedent_ids = models.JSONField(default=list, blank=True, help_text="the precedents the prompt showed, in order")
    item_hash = models.CharField(max_length=64)
    cache_key = models.CharField(max_length=64)  # indexed in Meta: by equality only, no LIKE twin
    cached_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Audit pinning: the hash of the model files that made the labels (a student's manifest
    # model_hash); empty for backends whose model we cannot pin (a remote LLM, imported labels).
    model_hash = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "id"]
        constraints = [
            # The guarantee that a retried or redelivered chunk never duplicates a judgment.
            models.UniqueConstraint(fields=["run", "item"], name="judgment_unique_run_item"),
            models.CheckConstraint(
                condition=(Q(status="ok", labels__isnull=False) | Q(status="error", labels__isnull=True)),
                name="judgment_labels_iff_ok",
            ),
        ]
        # `db_index=True` on a CharField gives PostgreSQL a second, varchar_pattern_ops index for LIKE
        # (as large as the first: 1.2 GiB per 10M judgments); the cache is only looked up by equality.
        indexes = [models.Index(fields=["run", "status"]), models.Index(fields=["cache_key"], name="judgment_cache_key")]

    def __str__(self) -> str:
        return f"judgment {self.pk} ({self.status})"


class InjectionCheck(models.Model):
    """How often a judge version's label rose when injection text was appended to real passages.

    Each of `passages` (query, passage) pairs is judged twice through the version's own backend and
    prompt, clean and with one of a fixed set of injection templates appended to the body
    (judges.injection_check.TEMPLATES, rotated over the passages). Nothing is cached or stored as a
    judgment: a check measures the judge, it labels no traffic.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    judge_version = models.ForeignKey(JudgeVersion, on_delete=models.CASCADE, related_name="injection_checks")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    passages = models.PositiveIntegerField(help_text="pairs asked for")
    seed = models.BigIntegerField(default=1)
    source = models.CharField(max_length=200, blank=True, help_text="where the passages came from")
    total_calls = models.PositiveIntegerField(default=0)
    done_calls = models.PositiveIntegerField(default=0)
    # Pairs whose clean and injected judgments both gave a label; `rose`: of those, how many got a
    # higher overall label with the injection.
    n = models.PositiveIntegerField(default=0)
    rose = models.PositiveIntegerField(default=0)
    fell = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    mean_delta = models.FloatField(null=True, blank=True)
    # {template: {"n", "rose", "mean_delta"}}; and the detector on the same texts, clean vs injected.
    by_template = models.JSONField(default=dict, blank=True)
    flagged_clean = models.PositiveIntegerField(default=0)
    flagged_injected = models.PositiveIntegerField(default=0)
    # Per pair: ids, template, clean and injected labels (or the error), for the drill-down and audits.
    results = models.JSONField(default=list, blank=True)
    message = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Written with the progress; a check whose worker died stops writing it, and the next start of a
    # check of the same version fails it (judges.injection_check.injection_check_start).
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"injection check {self.pk} of {self.judge_version}"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def rate(self) -> float | None:
        """Share of pairs whose label rose, 0-1; None before any pair was judged both ways."""
        return self.rose / self.n if self.n else None

    @property
    def percent_done(self) -> int:
        return int(100 * self.done_calls / self.total_calls) if self.total_calls else 0

    @property
    def summary(self) -> str:
        if self.rate is None:
            return "no pair was judged both ways"
        return f"label rose on {self.rose} of {self.n} ({self.rate:.0%})"
