"""Human review: queues over samples, assignments that hand out items, and revisioned labels."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from policy.models import PolicyVersion
from traffic.models import Item, Sample

MAX_RATIONALE_CHARS = 4_000


class ReviewQueue(models.Model):
    """A sample to label under one policy version, by these reviewers, `overlap` labels per item."""

    name = models.CharField(max_length=120)
    sample = models.ForeignKey(Sample, on_delete=models.PROTECT, related_name="review_queues")
    policy_version = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, related_name="review_queues")
    reviewers = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="review_queues")
    overlap = models.PositiveSmallIntegerField(
        default=2, validators=[MinValueValidator(1), MaxValueValidator(10)],
        help_text="labels per item; 2 or more gives a human-human agreement baseline",
    )
    instructions = models.TextField(blank=True)
    assignment_minutes = models.PositiveSmallIntegerField(
        default=30, help_text="an item handed out but not labelled within this time goes back to the pool")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class Assignment(models.Model):
    """One item handed to one reviewer in one queue; never the same item twice to the same reviewer."""

    class Status(models.TextChoices):
        ASSIGNED = "assigned", "Assigned"
        DONE = "done", "Labelled"
        SKIPPED = "skipped", "Skipped"

    queue = models.ForeignKey(ReviewQueue, on_delete=models.CASCADE, related_name="assignments")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="+")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ASSIGNED)
    position = models.PositiveIntegerField(help_text="the item's position in the sample")
    assigned_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["queue", "reviewer", "assigned_at"]
        constraints = [
            models.UniqueConstraint(fields=["queue", "item", "reviewer"], name="assignment_unique_per_reviewer"),
        ]
        indexes = [models.Index(fields=["queue", "item", "status"], name="assignment_queue_item_status")]

    def __str__(self) -> str:
        return f"{self.reviewer} · {self.item} ({self.status})"


class HumanLabel(models.Model):
    """One revision of one reviewer's labels for one item. Never updated except `is_latest`:
    a correction inserts the next revision and flips the previous one's flag, in one transaction."""

    class Source(models.TextChoices):
        REVIEW = "review", "Labelled in a review queue"
        IMPORT = "import", "Imported"
        CORRECTION = "correction", "Corrected in triage"

    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="human_labels")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="human_labels")
    queue = models.ForeignKey(ReviewQueue, null=True, blank=True, on_delete=models.SET_NULL, related_name="labels")
    policy_version = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, related_name="human_labels")
    rubric_hash = models.CharField(max_length=16, help_text="the rubric the labels were validated against")
    labels = models.JSONField(help_text="{dimension key: level value}")
    rationale = models.TextField(blank=True, max_length=MAX_RATIONALE_CHARS)
    revision = models.PositiveIntegerField(default=1)
    is_latest = models.BooleanField(default=True)
    supersedes = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    source = models.CharField(max_length=12, choices=Source.choices, default=Source.REVIEW)
    reason = models.TextField(blank=True, help_text="why this revision replaced the previous one")
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+",
                                   help_text="who wrote this revision (a triager may correct a reviewer's label)")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["item", "reviewer", "-revision"]
        constraints = [
            models.UniqueConstraint(fields=["item", "reviewer", "revision"], name="humanlabel_unique_revision"),
            models.UniqueConstraint(fields=["item", "reviewer"], condition=Q(is_latest=True),
                                    name="humanlabel_one_latest"),
        ]
        indexes = [models.Index(fields=["item", "is_latest"], name="humanlabel_item_latest")]

    def __str__(self) -> str:
        return f"{self.reviewer} on {self.item} r{self.revision}"


class ExternalAssessor(models.Model):
    """An account that holds labels made outside SAGE (NIST, a vendor, another tool), one per named
    assessor. It cannot sign in and is no person's account, so an imported label never stands in a
    reviewer's name nor replaces what someone labelled in the app (`human_label_import`)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE,
                                related_name="external_assessor")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+",
                                   help_text="who imported the first labels under this name")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["user__username"]

    def __str__(self) -> str:
        return f"{self.user} (external assessor)"
