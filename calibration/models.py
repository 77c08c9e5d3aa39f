"""Calibration records: cached agreement of a judge run with humans, disagreements and their triage."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from judges.models import JudgeRun, Judgment
from policy.models import PolicyVersion
from precedent.models import Precedent
from review.models import HumanLabel
from traffic.models import Item


class AgreementSnapshot(models.Model):
    """Judge-vs-human agreement of one run on one dimension, as computed at `labels_token`.

    Pages read these instead of recomputing over every judgment; a snapshot is stale when its token
    no longer matches `selectors.snapshot_token` (a human label, the gold labellers or the run's
    judgments changed), and a page then computes the agreement afresh without storing it.
    """

    run = models.ForeignKey(JudgeRun, on_delete=models.CASCADE, related_name="agreement_snapshots")
    dimension = models.CharField(max_length=40)
    labels_token = models.CharField(max_length=64)
    n = models.PositiveIntegerField()
    n_queries = models.PositiveIntegerField()
    estimates = models.JSONField()
    ci = models.JSONField()
    confusion = models.JSONField()
    values = models.JSONField()
    reason = models.TextField(blank=True)
    ci_method = models.CharField(max_length=200, blank=True, help_text="how the intervals were computed")
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "dimension"], name="agreementsnapshot_unique")]

    @property
    def warning(self) -> str | None:
        from sage_stats.agreement import few_queries_warning

        return few_queries_warning(self.n_queries)


class GoldLabeller(models.Model):
    """A labeller whose labels are the human consensus wherever they labelled (e.g. the NIST assessor
    of a TREC set): other people's labels on those items still count for the human–human ceiling,
    but never outvote the gold label (sage_stats.consensus states the rule)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE,
                                related_name="gold_labeller")
    note = models.CharField(max_length=200, blank=True, help_text="why their labels are the reference")
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["user__username"]

    def __str__(self) -> str:
        return f"{self.user} (gold)"


class Disagreement(models.Model):
    """An item where the judge and the human consensus differ by at least the threshold on a dimension."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        RESOLVED = "resolved", "Resolved"

    run = models.ForeignKey(JudgeRun, on_delete=models.CASCADE, related_name="disagreements")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="disagreements")
    judgment = models.ForeignKey(Judgment, on_delete=models.CASCADE, related_name="disagreements")
    dimension = models.CharField(max_length=40)
    judge_value = models.IntegerField()
    human_value = models.IntegerField()
    distance = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-distance", "id"]
        constraints = [models.UniqueConstraint(fields=["run", "item", "dimension"], name="disagreement_unique")]
        indexes = [models.Index(fields=["run", "status"])]

    def __str__(self) -> str:
        return f"{self.dimension}: judge {self.judge_value} vs humans {self.human_value}"


class TriageDecision(models.Model):
    """How a disagreement was resolved, by whom and why, and the records the resolution created."""

    class Resolution(models.TextChoices):
        JUDGE_WRONG = "judge_wrong", "Judge wrong"
        HUMAN_WRONG = "human_wrong", "Human wrong"
        POLICY_AMBIGUOUS = "policy_ambiguous", "Policy ambiguous"

    disagreement = models.OneToOneField(Disagreement, on_delete=models.CASCADE, related_name="decision")
    resolution = models.CharField(max_length=20, choices=Resolution.choices)
    note = models.TextField()
    clause = models.SlugField(max_length=90, blank=True)
    precedent = models.ForeignKey(Precedent, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    policy_draft = models.ForeignKey(PolicyVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    corrected_label = models.ForeignKey(HumanLabel, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decided_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.get_resolution_display()} by {self.decided_by}"
