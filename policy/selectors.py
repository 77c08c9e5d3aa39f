"""Reads for the policy pages: lists, the rendered text with clauses, and diffs between versions."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from django.db.models import Count, Prefetch, Q, QuerySet
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from .models import Policy, PolicyVersion
from .rubric import Rubric, parse_rubric


def policies_for_list() -> QuerySet[Policy]:
    return Policy.objects.select_related("surface").annotate(
        published_count=Count("versions", filter=Q(versions__status=PolicyVersion.Status.PUBLISHED)),
        draft_count=Count("versions", filter=Q(versions__status=PolicyVersion.Status.DRAFT)),
    ).prefetch_related(Prefetch("versions", queryset=PolicyVersion.objects.order_by("-number")))


@dataclass(frozen=True)
class RubricChange:
    kind: str  # added | removed | changed
    key: str
    details: list[str]


def rubric_changes(old: Rubric, new: Rubric) -> list[RubricChange]:
    changes = []
    for dim in new.dimensions:
        before = old.dimension(dim.key)
        if before is None:
            changes.append(RubricChange("added", dim.key, [f"{dim.name}: {', '.join(f'{lv.value} {lv.label}' for lv in dim.levels)}"]))
            continue
        details = []
        for attr in ("name", "description", "overall", "weight"):
            if getattr(before, attr) != getattr(dim, attr):
                details.append(f"{attr}: {getattr(before, attr)!r} → {getattr(dim, attr)!r}")
        for level in dim.levels:
            prior = before.level(level.value)
            if prior is None:
                details.append(f"level {level.value} added: {level.label}")
            elif prior != level:
                details.append(f"level {level.value}: {prior.label!r}/{prior.definition!r} → {level.label!r}/{level.definition!r}")
        for level in before.levels:
            if dim.level(level.value) is None:
                details.append(f"level {level.value} removed: {level.label}")
        if details:
            changes.append(RubricChange("changed", dim.key, details))
    for dim in old.dimensions:
        if new.dimension(dim.key) is None:
            changes.append(RubricChange("removed", dim.key, [dim.name]))
    return changes


@dataclass(frozen=True)
class VersionDiff:
    old: PolicyVersion
    new: PolicyVersion
    side_by_side: SafeString
    unified: list[tuple[str, str]]  # (css class, line)
    rubric: list[RubricChange]

    @property
    def text_changed(self) -> bool:
        return self.old.text != self.new.text


def version_diff(old: PolicyVersion, new: PolicyVersion) -> VersionDiff:
    old_lines, new_lines = old.text.splitlines(), new.text.splitlines()
    # HtmlDiff escapes the text it is given, so policy text cannot inject markup here.
    table = difflib.HtmlDiff(wrapcolumn=60).make_table(
        old_lines, new_lines, escape(old.label), escape(new.label), context=True, numlines=2
    )
    unified = []
    for line in difflib.unified_diff(old_lines, new_lines, old.label, new.label, lineterm="", n=2):
        css = "add" if line.startswith("+") and not line.startswith("+++") else (
            "del" if line.startswith("-") and not line.startswith("---") else "ctx")
        unified.append((css, line))
    return VersionDiff(old=old, new=new, side_by_side=mark_safe(table), unified=unified,
                       rubric=rubric_changes(parse_rubric(old.rubric), parse_rubric(new.rubric)))
