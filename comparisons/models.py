"""A comparison: control vs treatment on one surface, judged by one judge version over the same queries.

Its judge run is a normal run of the judges app over a traffic sample of the items it needs (both
variants' top k for each compared query); results are computed once that run ends, from the run's
judgments (or, for an imported judge, the labels already imported for those items).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse

from judges.models import JudgeRun, JudgeVersion
from policy.models import Surface
from traffic.models import Sample, Variant


class Comparison(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        JUDGING = "judging", "Judging"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        INCONCLUSIVE = "inconclusive", "Inconclusive"

    ACTIVE = (Status.QUEUED, Status.JUDGING)
    ENDED = (Status.DONE, Status.FAILED, Status.INCONCLUSIVE)

    name = models.CharField(max_length=120, blank=True)
    surface = models.ForeignKey(Surface, on_delete=models.PROTECT, related_name="comparisons")
    control = models.ForeignKey(Variant, on_delete=models.PROTECT, related_name="+")
    treatment = models.ForeignKey(Variant, on_delete=models.PROTECT, related_name="+")
    judge_version = models.ForeignKey(JudgeVersion, on_delete=models.PROTECT, related_name="comparisons")
    sample = models.ForeignKey(Sample, on_delete=models.PROTECT, related_name="comparisons",
                               help_text="the items judged: both variants' top k of the compared queries")
    judge_run = models.ForeignKey(JudgeRun, null=True, blank=True, on_delete=models.PROTECT, related_name="comparisons",
                                  help_text="none for an imported judge: its imported labels are used")
    k = models.PositiveSmallIntegerField(default=10)
    metrics = models.JSONField(default=list)
    thresholds = models.JSONField(default=dict, blank=True)
    alpha = models.FloatField(default=0.05)
    min_coverage = models.FloatField(default=0.9)
    query_spec = models.JSONField(default=dict, blank=True)
    # The treatment's ramp when the comparison was made: the history chart's x axis.
    treatment_ramp = models.DecimalField(max_digits=5, decimal_places=2, default=0)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    message = models.TextField(blank=True)
    results = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=20, default="ui")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["status"]), models.Index(fields=["surface", "treatment"])]
        constraints = [
            models.CheckConstraint(condition=~models.Q(control=models.F("treatment")), name="comparison_two_variants"),
        ]

    def __str__(self) -> str:
        return self.name or f"{self.treatment.name} vs {self.control.name}"

    def get_absolute_url(self) -> str:
        return reverse("comparisons:detail", kwargs={"pk": self.pk})

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def progress(self) -> tuple[int, int]:
        """(judged, total) items, for progress bars."""
        if self.judge_run_id is None:
            total = self.sample.item_count
            return (total if self.status in self.ENDED else 0), total
        run = self.judge_run
        return run.done_items, run.total_items

    @property
    def percent(self) -> int:
        done, total = self.progress
        return int(100 * done / total) if total else 100

    @property
    def badge(self) -> str:
        if self.status == self.Status.DONE:
            return "ok"
        if self.status in (self.Status.FAILED, self.Status.INCONCLUSIVE):
            return "bad"
        return "warn"
