"""Reads for the precedent pages."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, QuerySet

from policy.models import Policy
from sage.params import is_key, parse_int

from .models import Precedent


@dataclass(frozen=True)
class PrecedentFilters:
    policy: Policy | None = None
    status: str = ""
    clause: str = ""
    tag: str = ""
    label: str = ""  # "dimension=value"
    q: str = ""


def precedents_for_list(filters: PrecedentFilters) -> QuerySet[Precedent]:
    qs = Precedent.objects.select_related("policy", "author", "accepted_version")
    if filters.policy:
        qs = qs.filter(policy=filters.policy)
    if filters.status:
        qs = qs.filter(status=filters.status)
    if filters.clause:
        qs = qs.filter(clause=filters.clause)
    if filters.q:
        qs = qs.filter(Q(query__icontains=filters.q) | Q(title__icontains=filters.q) | Q(body__icontains=filters.q)
                       | Q(rationale__icontains=filters.q))
    if filters.label and "=" in filters.label:
        key, _, value = filters.label.partition("=")
        number = parse_int(value)
        # The key becomes part of an ORM lookup: only a plain dimension key may get there.
        if number is not None and is_key(key.strip()):
            qs = qs.filter(**{f"labels__{key.strip()}": number})
    if filters.tag:
        # JSON containment is not portable to SQLite, so match tags in Python on the filtered rows.
        ids = [pk for pk, tags in qs.values_list("id", "tags") if filters.tag in (tags or [])]
        qs = qs.filter(pk__in=ids)
    return qs.order_by("-updated_at", "-id")


def precedent_facets(policy: Policy | None) -> dict[str, list[str]]:
    qs = Precedent.objects.all()
    if policy:
        qs = qs.filter(policy=policy)
    clauses = sorted({c for c in qs.values_list("clause", flat=True) if c})
    tags = sorted({t for tags in qs.values_list("tags", flat=True) for t in (tags or [])})
    return {"clauses": clauses, "tags": tags}
