from __future__ import annotations

import hashlib
import json

from django.conf import settings
from django.db import models
from django.db.models import Q

from policy.models import Policy, PolicyVersion

MAX_QUERY_CHARS = 2_000
MAX_BODY_CHARS = 20_000
MAX_RATIONALE_CHARS = 4_000


class Precedent(models.Model):
    """A curated (query, result) example with per-dimension labels and the reason for them.

    Accepted precedents feed the judge prompt and the calibration set; every edit keeps a
    revision, so a judgment that cites a precedent set can be traced to the exact texts it saw.
    """

    class Status(models.TextChoices):
        PROPOSED = "proposed", "Proposed"
        ACCEPTED = "accepted", "Accepted"
        RETIRED = "retired", "Retired"

    class Provenance(models.TextChoices):
        MANUAL = "manual", "Manual"
        IMPORT = "import", "Import"
        TRIAGE = "triage", "Triage of a disagreement"

    policy = models.ForeignKey(Policy, on_delete=models.PROTECT, related_name="precedents")
    query = models.TextField()
    title = models.CharField(max_length=500, blank=True)
    body = models.TextField()
    url = models.URLField(max_length=2000, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    labels = models.JSONField(help_text="{dimension key: level value}")
    rationale = models.TextField()
    clause = models.SlugField(max_length=90, blank=True, help_text="anchor of the cited policy clause")
    tags = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PROPOSED)
    provenance = models.CharField(max_length=10, choices=Provenance.choices, default=Provenance.MANUAL)
    source_ref = models.CharField(max_length=200, blank=True, help_text="e.g. the disagreement it came from")
    accepted_version = models.ForeignKey(
        PolicyVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="the policy version whose rubric the labels were validated against on acceptance",
    )
    content_hash = models.CharField(max_length=64)
    revision = models.PositiveIntegerField(default=1)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["policy", "status"])]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="accepted") | Q(accepted_version__isnull=False),
                name="precedent_accepted_has_version",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.query[:60]}"

    def embedding_text(self) -> str:
        return f"{self.query}\n{self.title}\n{self.body}"


def precedent_content_hash(*, query: str, title: str, body: str, url: str, labels: dict, rationale: str,
                           clause: str) -> str:
    payload = json.dumps([query, title, body, url, labels, rationale, clause], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


class PrecedentRevision(models.Model):
    """The history of a precedent: a full snapshot after every change, with who and why."""

    precedent = models.ForeignKey(Precedent, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    snapshot = models.JSONField()
    note = models.CharField(max_length=500, blank=True)
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["precedent", "-number"]
        constraints = [models.UniqueConstraint(fields=["precedent", "number"], name="precedentrevision_unique")]


class PrecedentEmbedding(models.Model):
    """Cached embedding of a precedent's text; recomputed only when the text hash changes."""

    precedent = models.ForeignKey(Precedent, on_delete=models.CASCADE, related_name="embeddings")
    model_name = models.CharField(max_length=100)
    text_hash = models.CharField(max_length=64)
    vector = models.BinaryField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["precedent", "model_name"], name="precedentembedding_unique"),
        ]


class PrecedentSet(models.Model):
    """A frozen snapshot of a policy's accepted precedents: what a judgment records having seen."""

    policy = models.ForeignKey(Policy, on_delete=models.PROTECT, related_name="precedent_sets")
    hash = models.CharField(max_length=64)
    members = models.JSONField(help_text="[[precedent id, content hash], …] sorted by id")
    size = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["policy", "hash"], name="precedentset_unique_hash")]

    def __str__(self) -> str:
        return f"{self.policy.name} precedents {self.hash[:10]} ({self.size})"
