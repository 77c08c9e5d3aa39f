"""Traffic: what ranking variants served, and the frozen samples drawn from it.

Queries are addressed by their normalized text and documents by their id in the source system
together with their text (sha256), so the same (query, document) pair served by control and
treatment — or imported twice — is one `Item`, judged once per policy version, while two document
ids with the same text stay two items (MS MARCO has many such passages; the judge's prompt cache
still judges the identical text once).
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from policy.models import Surface


class Variant(models.Model):
    """One ranking model/configuration serving traffic on a surface."""

    class Role(models.TextChoices):
        CONTROL = "control", "Control"
        TREATMENT = "treatment", "Treatment"

    surface = models.ForeignKey(Surface, on_delete=models.PROTECT, related_name="variants")
    name = models.SlugField(max_length=60, help_text="the name import rows use in their 'variant' field")
    description = models.TextField(blank=True)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.TREATMENT)
    ramp_percent = models.DecimalField(
        max_digits=5, decimal_places=2, default=0,
        validators=[MinValueValidator(0), MaxValueValidator(100)], help_text="share of live traffic, 0-100",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["surface", "role", "name"]
        constraints = [models.UniqueConstraint(fields=["surface", "name"], name="variant_unique_name_per_surface")]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_role_display().lower()})"


class Query(models.Model):
    """A query as users typed it; `text_hash` is over the normalized text (case, spacing)."""

    text = models.TextField()
    text_hash = models.CharField(max_length=64, unique=True)
    segment = models.CharField(max_length=60, blank=True, help_text="e.g. head/torso/tail, or a vertical")
    locale = models.CharField(max_length=20, blank=True)
    external_id = models.CharField(max_length=200, blank=True)

    class Meta:
        verbose_name_plural = "queries"

    def __str__(self) -> str:
        return self.text[:80]


class Document(models.Model):
    """A result document; `content_hash` is its key: the source's id with the title, body and url
    (`traffic.rows.document_hash`; not the extra fields). See migration 0006."""

    content_hash = models.CharField(max_length=64, unique=True)
    external_id = models.CharField(max_length=200, blank=True)
    title = models.TextField(blank=True)
    body = models.TextField()
    url = models.TextField(blank=True)
    fields = models.JSONField(default=dict, blank=True)
    # Set at import from the title and body (judges.core.injection): the text looks addressed to a
    # judge ("ignore previous instructions", "rate this 3", a role tag). Codes, comma-separated;
    # the reasons are looked up by code when shown. Only a partial index (`document_flagged`): it
    # holds the flagged few, so an import of clean documents writes nothing to it, and it answers
    # "which documents are flagged now" (the token that comparison pages cache their counts by).
    injection_flag = models.BooleanField(default=False, db_default=False)
    injection_reasons = models.CharField(max_length=200, blank=True, default="", db_default="")

    class Meta:
        indexes = [models.Index(fields=["id"], condition=models.Q(injection_flag=True), name="document_flagged")]

    def __str__(self) -> str:
        return self.external_id or self.content_hash[:12]

    @property
    def injection_reasons_text(self) -> str:
        """The flag's reasons, one per line, for a badge's tooltip."""
        from judges.core.injection import reasons_text

        return reasons_text(self.injection_reasons)

    @property
    def link_url(self) -> str:
        """The url when it is safe to link to (http/https only: a `javascript:` url must never be an href)."""
        return self.url if self.url.lower().startswith(("https://", "http://")) else ""


class Item(models.Model):
    """The unit that gets judged: one (query, document) pair, shared by every variant that served it."""

    # Unique by construction, not by an index: it is a hash of the query's and the document's
    # hashes, and item_unique_pair makes that pair unique. No index at all (migration 0005): every
    # index here is a write per imported item, and the one reader by hash, a label import,
    # resolves a chunk of hashes in one scan.
    hash = models.CharField(max_length=64)
    # No indexes of their own: item_unique_pair (query, document) serves lookups by query, and
    # nothing looks items up by document (deleting a document, admin only, scans).
    query = models.ForeignKey(Query, on_delete=models.PROTECT, related_name="items", db_index=False)
    document = models.ForeignKey(Document, on_delete=models.PROTECT, related_name="items", db_index=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["query", "document"], name="item_unique_pair")]

    def __str__(self) -> str:
        return f"item {self.hash[:12]}"


class TrafficImport(models.Model):
    """One imported file. Only successful imports exist: an import is one transaction."""

    class Format(models.TextChoices):
        JSONL = "jsonl", "JSONL"
        CSV = "csv", "CSV"

    surface = models.ForeignKey(Surface, on_delete=models.PROTECT, related_name="traffic_imports")
    sha256 = models.CharField(max_length=64)
    filename = models.CharField(max_length=255, blank=True)
    format = models.CharField(max_length=5, choices=Format.choices)
    rows = models.PositiveIntegerField(default=0)
    stats = models.JSONField(default=dict, blank=True)
    seconds = models.FloatField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        # The file hash makes re-importing the same file a no-op, even when two uploads race.
        constraints = [models.UniqueConstraint(fields=["surface", "sha256"], name="trafficimport_unique_file")]

    def __str__(self) -> str:
        return f"{self.filename or self.sha256[:12]} ({self.rows} rows)"


class ResultEntry(models.Model):
    """One position of one result list: `variant` served `item` at `rank` for `query`."""

    # No single-column indexes (each index is ~15% of every import's entry inserts):
    # resultentry_unique_rank starts with traffic_import, resultentry_variant_rank with variant, and
    # nothing looks entries up by query or item — reads go variant → entries → items — while queries
    # and items are never deleted (PROTECT), which is all those two indexes would serve.
    traffic_import = models.ForeignKey(TrafficImport, on_delete=models.CASCADE, related_name="entries",
                                       db_index=False)
    variant = models.ForeignKey(Variant, on_delete=models.PROTECT, related_name="entries", db_index=False)
    query = models.ForeignKey(Query, on_delete=models.PROTECT, related_name="entries", db_index=False)
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="entries", db_index=False)
    rank = models.PositiveIntegerField()
    served_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "result entries"
        constraints = [
            models.UniqueConstraint(fields=["traffic_import", "variant", "query", "rank"],
                                    name="resultentry_unique_rank"),
        ]
        indexes = [models.Index(fields=["variant", "rank"], name="resultentry_variant_rank")]

    def __str__(self) -> str:
        return f"{self.variant.name} #{self.rank}"


class Sample(models.Model):
    """A frozen, reproducible set of items: strategy + params + seed + traffic snapshot → the same items."""

    name = models.CharField(max_length=120)
    surface = models.ForeignKey(Surface, on_delete=models.PROTECT, related_name="samples")
    strategy = models.CharField(max_length=40)
    params = models.JSONField(default=dict, blank=True)
    seed = models.BigIntegerField()
    snapshot = models.JSONField(default=dict, help_text="max result entry id and import ids at draw time")
    frozen = models.BooleanField(default=True)
    item_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class SampleItem(models.Model):
    sample = models.ForeignKey(Sample, on_delete=models.CASCADE, related_name="sample_items")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="sample_items")
    position = models.PositiveIntegerField()

    class Meta:
        ordering = ["sample", "position"]
        constraints = [
            models.UniqueConstraint(fields=["sample", "item"], name="sampleitem_unique_item"),
            models.UniqueConstraint(fields=["sample", "position"], name="sampleitem_unique_position"),
        ]

    def __str__(self) -> str:
        return f"{self.sample} #{self.position}"
