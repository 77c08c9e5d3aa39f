from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from .rubric import Rubric, parse_rubric


class Surface(models.Model):
    """A search product being governed (e.g. "web passage search")."""

    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Policy(models.Model):
    surface = models.ForeignKey(Surface, on_delete=models.PROTECT, related_name="policies")
    slug = models.SlugField(max_length=60)
    name = models.CharField(max_length=120)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["surface__name", "name"]
        constraints = [models.UniqueConstraint(fields=["surface", "slug"], name="policy_unique_slug_per_surface")]
        verbose_name_plural = "policies"

    def __str__(self) -> str:
        return f"{self.surface.name} / {self.name}"

    def latest_published(self) -> PolicyVersion | None:
        return self.versions.filter(status=PolicyVersion.Status.PUBLISHED).order_by("-number").first()

    def current_draft(self) -> PolicyVersion | None:
        return self.versions.filter(status=PolicyVersion.Status.DRAFT).first()


class PolicyVersion(models.Model):
    """One version of a policy: Markdown text plus a rubric.

    A draft is edited in place (guarded by `lock_version`); publishing gives it the next number and
    freezes it: services refuse to change a published version, and on PostgreSQL a trigger refuses
    any UPDATE of its text, rubric or number.
    """

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        PUBLISHED = "published", "Published"

    policy = models.ForeignKey(Policy, on_delete=models.PROTECT, related_name="versions")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    number = models.PositiveIntegerField(null=True, blank=True, help_text="set on publish: 1, 2, 3 …")
    based_on = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    text = models.TextField(blank=True)
    rubric = models.JSONField()
    rubric_hash = models.CharField(max_length=16)
    change_note = models.TextField(blank=True)
    lock_version = models.PositiveIntegerField(default=1)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["policy", "-number", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "number"], name="policyversion_unique_number"),
            # At most one open draft per policy: two reviewers edit the same draft, never two drafts.
            models.UniqueConstraint(fields=["policy"], condition=Q(status="draft"), name="policyversion_one_draft"),
            models.CheckConstraint(
                condition=(Q(status="draft", number__isnull=True, published_at__isnull=True)
                           | Q(status="published", number__isnull=False, published_at__isnull=False)),
                name="policyversion_number_iff_published",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.policy.name} {self.label}"

    @property
    def label(self) -> str:
        return f"v{self.number}" if self.number else "draft"

    @property
    def is_published(self) -> bool:
        return self.status == self.Status.PUBLISHED

    def parsed_rubric(self) -> Rubric:
        cached = getattr(self, "_parsed_rubric", None)
        if cached is None:
            cached = self._parsed_rubric = parse_rubric(self.rubric)
        return cached


class PolicyClause(models.Model):
    """A heading of a policy version's text: what precedents and triage decisions cite."""

    version = models.ForeignKey(PolicyVersion, on_delete=models.CASCADE, related_name="clauses")
    anchor = models.SlugField(max_length=90)
    title = models.CharField(max_length=300)
    level = models.PositiveSmallIntegerField()
    order = models.PositiveIntegerField()

    class Meta:
        ordering = ["version", "order"]
        constraints = [models.UniqueConstraint(fields=["version", "anchor"], name="policyclause_unique_anchor")]

    def __str__(self) -> str:
        return f"§{self.anchor}"
