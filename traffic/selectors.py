"""Reads of traffic for the pages and for other apps."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, QuerySet

from policy.models import Surface

from .models import Item, Sample, SampleItem, TrafficImport, Variant


def traffic_overview() -> list[dict[str, Any]]:
    """Per surface: its variants with entry counts, recent imports and samples (the traffic page)."""
    overview = []
    for surface in Surface.objects.order_by("name"):
        variants = Variant.objects.filter(surface=surface).annotate(
            entry_count=Count("entries"), query_count=Count("entries__query", distinct=True)
        )
        overview.append({
            "surface": surface,
            "variants": list(variants),
            "imports": list(TrafficImport.objects.filter(surface=surface).select_related("created_by")[:10]),
            "samples": list(Sample.objects.filter(surface=surface)[:20]),
        })
    return overview


def sample_items(*, sample: Sample) -> QuerySet[SampleItem]:
    return sample.sample_items.select_related("item__query", "item__document").order_by("position")


def sample_item_ids(*, sample: Sample) -> list[int]:
    return list(sample.sample_items.order_by("position").values_list("item_id", flat=True))


def item_with_content(*, item_id: int) -> Item:
    return Item.objects.select_related("query", "document").get(pk=item_id)
