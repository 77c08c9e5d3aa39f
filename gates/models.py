"""Regression gates: a named comparison recipe that CI runs against each candidate variant, and the
scoped API tokens CI authenticates with.

A gate run owns no statistics of its own: it starts a `comparisons.Comparison` (baseline vs
candidate, with the gate's judge, metrics, thresholds and sample) and maps the comparison's verdicts
to a CI outcome — pass (exit 0), regression (1), error or inconclusive (2).
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from judges.models import JudgeVersion
from policy.models import Surface
from traffic.models import TrafficImport, Variant


class Scope(models.TextChoices):
    GATE_RUN = "gate:run", "gate:run — start gate runs and read their reports"
    GATE_READ = "gate:read", "gate:read — read gate runs' reports"
    TRAFFIC_IMPORT = "traffic:import", "traffic:import — import traffic files"


class ScopedToken(models.Model):
    """A bearer token for CI: scoped, optionally tied to one surface, expiring, revocable.

    The secret (`sgt_<public id>_<secret>`) is shown once, at creation. Only its sha256 is stored:
    the secret has 256 bits of entropy, so a fast hash is as safe as a slow one, and the public id
    (`prefix`, unique) finds the row without comparing hashes across the table.
    """

    name = models.CharField(max_length=100)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="scoped_tokens")
    scopes = models.JSONField(default=list, help_text="a list of Scope values")
    surface = models.ForeignKey(Surface, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
                                help_text="when set, the token works on this surface's gates and traffic only")
    prefix = models.CharField(max_length=20, unique=True, help_text="the token's public part, shown in lists")
    secret_hash = models.CharField(max_length=64)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.is_expired else "active"

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class Gate(models.Model):
    """What CI checks before a ramp: candidate vs this baseline, judged by this judge, on these metrics."""

    class SampleKind(models.TextChoices):
        ALL = "all", "All queries both variants served"
        RANDOM = "random", "A seeded random subset of those queries"
        SAMPLE = "sample", "The queries of an existing traffic sample"

    name = models.SlugField(max_length=60, unique=True, help_text="CI calls the gate by this name")
    description = models.TextField(blank=True)
    surface = models.ForeignKey(Surface, on_delete=models.PROTECT, related_name="gates")
    baseline = models.ForeignKey(Variant, on_delete=models.PROTECT, related_name="+",
                                 help_text="the control every candidate is compared with")
    judge_version = models.ForeignKey(JudgeVersion, on_delete=models.PROTECT, related_name="+")
    k = models.PositiveSmallIntegerField(default=10, validators=[MinValueValidator(1), MaxValueValidator(100)])
    # {metric name: threshold}: a delta at or below a (negative) threshold that is also significant is
    # a regression. Names as comparisons.services documents them, with k substituted ("ndcg@10").
    metrics = models.JSONField(default=dict)
    alpha = models.FloatField(default=0.05, validators=[MinValueValidator(0.0001), MaxValueValidator(0.5)])
    sample_kind = models.CharField(max_length=10, choices=SampleKind.choices, default=SampleKind.ALL)
    sample_size = models.PositiveIntegerField(null=True, blank=True, help_text="queries, for a random subset")
    sample_seed = models.BigIntegerField(default=1)
    sample = models.ForeignKey("traffic.Sample", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    min_coverage = models.FloatField(default=0.95, validators=[MinValueValidator(0), MaxValueValidator(1)],
                                     help_text="below this share of judged top-k results the gate is inconclusive")
    timeout_s = models.PositiveIntegerField(default=3600, validators=[MinValueValidator(10)],
                                            help_text="a run still judging after this long ends as an error")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("gates:detail", args=[self.pk])


class GateRun(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        PASSED = "passed", "Passed"
        REGRESSION = "regression", "Regression"
        INCONCLUSIVE = "inconclusive", "Inconclusive"
        ERROR = "error", "Error"

    class Source(models.TextChoices):
        API = "api", "API"
        COMMAND = "command", "Command"
        UI = "ui", "UI"

    EXIT_CODES = {Status.PASSED: 0, Status.REGRESSION: 1, Status.INCONCLUSIVE: 2, Status.ERROR: 2}

    gate = models.ForeignKey(Gate, on_delete=models.PROTECT, related_name="runs")
    candidate = models.ForeignKey(Variant, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.RUNNING)
    comparison = models.ForeignKey("comparisons.Comparison", null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="gate_runs")
    traffic_import = models.ForeignKey(TrafficImport, null=True, blank=True, on_delete=models.SET_NULL,
                                       related_name="+", help_text="the candidate's traffic sent with the run")
    result = models.JSONField(default=dict, blank=True, help_text="the report, frozen when the run ended")
    exit_code = models.SmallIntegerField(null=True, blank=True)
    message = models.TextField(blank=True)
    source = models.CharField(max_length=10, choices=Source.choices)
    token = models.ForeignKey(ScopedToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="gate_runs")
    # A CI job that retries its POST (a network blip) names its attempt: the same key answers with the
    # same run instead of starting a second one.
    client_key = models.CharField(max_length=100, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    deadline_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status"])]
        constraints = [
            models.UniqueConstraint(fields=["gate", "client_key"], condition=~Q(client_key=""),
                                    name="gaterun_unique_client_key"),
        ]

    def __str__(self) -> str:
        return f"{self.gate.name} run {self.pk} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("gates:run", args=[self.pk])

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.RUNNING

    @property
    def badge(self) -> str:
        return {"passed": "ok", "running": "warn"}.get(self.status, "bad")
