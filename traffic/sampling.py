"""Sampling strategies: pure draws over a pinned traffic snapshot, deterministic in the seed.

Every strategy sees only result entries at or below the snapshot's max id, orders its candidates by
content hash (not by database id, which differs between databases) and draws with
`random.Random(seed)`; so the same surface, snapshot, params and seed give the same items, in the same
order, forever — and traffic imported later does not change an old sample.

Extension point: `STRATEGIES` is a registry. The disagreement/uncertainty strategy needs judgments,
so the calibration app registers it from its own AppConfig.ready() with `@register_strategy(...)`.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db.models import Max, QuerySet

from policy.models import Surface

from .models import ResultEntry, Variant


class SamplingError(ValueError):
    pass


@dataclass(frozen=True)
class DrawContext:
    surface: Surface
    params: dict[str, Any]
    rng: random.Random
    entries: QuerySet[ResultEntry]  # restricted to the surface and the snapshot


@dataclass(frozen=True)
class Strategy:
    key: str
    label: str
    help: str
    draw: Callable[[DrawContext], list[int]]


STRATEGIES: dict[str, Strategy] = {}


def register_strategy(key: str, *, label: str, help: str) -> Callable:
    def decorator(fn: Callable[[DrawContext], list[int]]) -> Callable[[DrawContext], list[int]]:
        STRATEGIES[key] = Strategy(key=key, label=label, help=help, draw=fn)
        return fn

    return decorator


def traffic_snapshot(*, surface: Surface) -> dict[str, Any]:
    entries = ResultEntry.objects.filter(variant__surface=surface)
    return {
        "max_entry_id": entries.aggregate(m=Max("id"))["m"] or 0,
        "import_ids": sorted(surface.traffic_imports.values_list("id", flat=True)),
    }


def draw_item_ids(*, surface: Surface, strategy: str, params: dict[str, Any], seed: int,
                  snapshot: dict[str, Any]) -> list[int]:
    if strategy not in STRATEGIES:
        raise SamplingError(f"unknown strategy {strategy!r}")
    entries = ResultEntry.objects.filter(
        variant__surface=surface, id__lte=int(snapshot.get("max_entry_id", 0)),
        traffic_import_id__in=snapshot.get("import_ids", []),
    )
    ctx = DrawContext(surface=surface, params=dict(params), rng=random.Random(int(seed)), entries=entries)
    drawn = STRATEGIES[strategy].draw(ctx)
    if _flag_param(params):
        seen = set(drawn)
        drawn = drawn + [i for i in flagged_item_ids(ctx) if i not in seen]
    return drawn


def _flag_param(params: dict[str, Any]) -> bool:
    return params.get("include_flagged") in (True, "true", "on", "1", 1)


def flagged_item_ids(ctx: DrawContext) -> list[int]:
    """Every item of the snapshot (of the `variants` named, if any) whose document carries an injection
    flag, by item hash. `include_flagged` adds them to any strategy's draw, so a sample that goes to
    review sends each of them to a human: a label of a result that talks to the judge is not to be
    trusted from the judge."""
    rows = set(_variant_filter(ctx).filter(item__document__injection_flag=True).values_list("item__hash", "item_id"))
    return [item_id for _hash, item_id in sorted(rows)]


# --- parameter helpers ---------------------------------------------------------------------------

def _int_param(params: dict[str, Any], key: str, *, default: int | None = None, minimum: int = 1) -> int | None:
    value = params.get(key, default)
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise SamplingError(f"{key} must be a whole number") from None
    if number < minimum:
        raise SamplingError(f"{key} must be at least {minimum}")
    return number


def _variant_filter(ctx: DrawContext) -> QuerySet[ResultEntry]:
    names = ctx.params.get("variants") or []
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        return ctx.entries
    known = set(Variant.objects.filter(surface=ctx.surface, name__in=names).values_list("name", flat=True))
    unknown = sorted(set(names) - known)
    if unknown:
        raise SamplingError(f"unknown variant(s): {', '.join(unknown)}")
    return ctx.entries.filter(variant__name__in=names)


def _distinct_items(entries: QuerySet[ResultEntry]) -> list[tuple[str, int, str]]:
    """(item hash, item id, query segment), sorted by hash: a database-independent order."""
    rows = set(entries.values_list("item__hash", "item_id", "query__segment"))
    return sorted(rows)


def _draw_queries(ctx: DrawContext, query_hashes: list[str]) -> list[str]:
    limit = _int_param(ctx.params, "queries")
    ordered = sorted(query_hashes)
    if limit is None or limit >= len(ordered):
        return ordered
    return sorted(ctx.rng.sample(ordered, limit))


def _top_k_items(entries: QuerySet[ResultEntry], k: int, query_hashes: set[str]) -> list[int]:
    rows = sorted(set(entries.filter(rank__lte=k).values_list("query__text_hash", "rank", "item__hash", "item_id")))
    seen: set[int] = set()
    ordered: list[int] = []
    for qh, _rank, _ihash, item_id in rows:
        if qh in query_hashes and item_id not in seen:
            seen.add(item_id)
            ordered.append(item_id)
    return ordered


# --- the strategies ------------------------------------------------------------------------------

@register_strategy("uniform", label="Uniform over items",
                   help="size items drawn uniformly from every item served (optionally only by some variants).")
def draw_uniform(ctx: DrawContext) -> list[int]:
    size = _int_param(ctx.params, "size", default=100)
    items = _distinct_items(_variant_filter(ctx))
    chosen = ctx.rng.sample(items, min(size, len(items)))
    return [item_id for _hash, item_id, _segment in chosen]


@register_strategy("stratified", label="Stratified by query segment",
                   help="size items split across query segments, proportional to each segment's items "
                        "(allocation=proportional) or equally (allocation=equal).")
def draw_stratified(ctx: DrawContext) -> list[int]:
    size = _int_param(ctx.params, "size", default=100)
    allocation = ctx.params.get("allocation", "proportional")
    if allocation not in ("proportional", "equal"):
        raise SamplingError("allocation must be 'proportional' or 'equal'")
    strata: dict[str, list[tuple[str, int, str]]] = defaultdict(list)
    for row in _distinct_items(_variant_filter(ctx)):
        strata[row[2] or "(none)"].append(row)
    total = sum(len(rows) for rows in strata.values())
    if total == 0:
        return []
    names = sorted(strata)
    size = min(size, total)
    if allocation == "equal":
        quota = {name: size // len(names) for name in names}
        remainders = {name: 0.0 for name in names}
        leftover = size - sum(quota.values())
    else:
        exact = {name: size * len(strata[name]) / total for name in names}
        quota = {name: int(exact[name]) for name in names}
        remainders = {name: exact[name] - quota[name] for name in names}
        leftover = size - sum(quota.values())
    # Largest remainder first (ties by name) hands out what rounding down left over.
    for name in sorted(names, key=lambda n: (-remainders[n], n)):
        if leftover <= 0:
            break
        quota[name] += 1
        leftover -= 1
    chosen: list[int] = []
    spill = 0
    for name in names:
        take = quota[name] + spill
        available = strata[name]
        spill = max(0, take - len(available))
        chosen.extend(item_id for _h, item_id, _s in ctx.rng.sample(available, min(take, len(available))))
    return chosen


@register_strategy("top_k", label="Top-k positions per variant",
                   help="every item each variant ranked at k or better, for all queries or a drawn subset "
                        "(queries=N).")
def draw_top_k(ctx: DrawContext) -> list[int]:
    k = _int_param(ctx.params, "k", default=10)
    entries = _variant_filter(ctx)
    query_hashes = set(entries.values_list("query__text_hash", flat=True))
    chosen_queries = set(_draw_queries(ctx, list(query_hashes)))
    return _top_k_items(entries, k, chosen_queries)


@register_strategy("union_top_k", label="Union of control and treatment top-k",
                   help="for queries both variants served (all, or queries=N drawn), the union of control's "
                        "and treatment's top k — what a comparison judges.")
def draw_union_top_k(ctx: DrawContext) -> list[int]:
    k = _int_param(ctx.params, "k", default=10)
    control, treatment = ctx.params.get("control"), ctx.params.get("treatment")
    if not control or not treatment or control == treatment:
        raise SamplingError("name two different variants: control and treatment")
    pair = ctx.entries.filter(variant__name__in=[control, treatment])
    found = set(Variant.objects.filter(surface=ctx.surface, name__in=[control, treatment]).values_list("name", flat=True))
    if len(found) != 2:
        raise SamplingError(f"unknown variant(s): {', '.join(sorted({control, treatment} - found))}")
    served_by_control = set(pair.filter(variant__name=control).values_list("query__text_hash", flat=True))
    served_by_treatment = set(pair.filter(variant__name=treatment).values_list("query__text_hash", flat=True))
    shared = sorted(served_by_control & served_by_treatment)
    chosen_queries = set(_draw_queries(ctx, shared))
    return _top_k_items(pair, k, chosen_queries)


# Registered by the judges app once judgments exist (it needs judge labels to rank uncertainty):
#   @register_strategy("disagreement", label=..., help=...)
#   def draw_disagreement(ctx: DrawContext) -> list[int]: ...
