"""Data for the distill app's tests: a surface with traffic over `queries` queries, a published TREC
relevance policy, a sample of every item, teacher runs imported through judges.services and human
labels imported through review.services — real rows through the real services, no shortcuts."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

from judges.services import judge_create, judge_run_import
from review.services import human_label_import
from tests.factories import UserFactory, published_version, ranked_traffic, traffic_surface
from traffic.models import Item
from traffic.services import sample_draw

# Real text, so a tiny student has something to learn: relevant passages repeat the query's words.
TOPICS = ["blanch spinach", "boil eggs", "tune a guitar", "train a puppy", "plant tomatoes", "bake bread",
          "change a tire", "brew coffee", "fold a shirt", "paint a wall", "clean a grill", "sharpen a knife"]


@dataclass
class World:
    surface: object
    version: object
    sample: object
    analyst: object
    items: list


def world(*, queries: int = 10, depth: int = 4, slug: str = "distill-web") -> World:
    surface = traffic_surface(slug)
    rows = []
    from tests.factories import import_traffic_rows, traffic_row

    for q in range(queries):
        topic = TOPICS[q % len(TOPICS)] + ("" if q < len(TOPICS) else f" {q}")
        for rank in range(1, depth + 1):
            relevant = rank <= depth // 2
            body = (f"How to {topic}: step by step, {topic} properly." if relevant
                    else f"A note on something unrelated, number {rank} of {q}.")
            rows.append(traffic_row(variant="control", query=f"how to {topic}", rank=rank, doc_id=f"q{q}-d{rank}",
                                    title=topic if relevant else "misc", body=body, url=""))
    import_traffic_rows(surface, rows, filename=f"distill-{queries}-{depth}.jsonl")
    version = published_version(surface)
    analyst = UserFactory(username="distill-analyst", roles=["analyst"])
    sample = sample_draw(surface=surface, name="all", strategy="top_k", params={"k": depth, "variants": ["control"]},
                         seed=1, user=analyst)
    items = list(Item.objects.filter(sample_items__sample=sample).select_related("query", "document")
                 .order_by("sample_items__position"))
    return World(surface, version, sample, analyst, items)


def teacher_run(w: World, name: str, label_of, *, version=None):
    """An imported judge run whose label of each item is label_of(item) (an int, or None to leave it out)."""
    version = judge_create(name=name, surface=w.surface, user=w.analyst, backend="imported", model_name=name,
                           policy_version=version or w.version, precedent_k=0)
    extra = {d.key: d.values[0] for d in version.policy_version.parsed_rubric().dimensions if d.key != "relevance"}
    rows = [(n, {"query_id": i.query.external_id, "doc_id": i.document.external_id,
                 "labels": {"relevance": label_of(i), **extra}}) for n, i in enumerate(w.items, 1)]
    report = judge_run_import(version=version, sample=w.sample, stream=None, user=w.analyst, rows=rows)
    assert not report.errors, report.errors
    return report.run


def relevant(item) -> int:
    return 3 if item.document.title != "misc" else 0


def human_labels(w: World, label_of, *, assessor: str = "nist", items=None) -> None:
    lines = [json.dumps({"assessor": assessor, "query": i.query.text, "doc_id": i.document.external_id,
                         "labels": {"relevance": label_of(i)}}).encode() + b"\n" for i in (items or w.items)]
    stats = human_label_import(source=io.BytesIO(b"".join(lines)), policy_version=w.version, user=w.analyst)
    assert stats.get("errors", []) == [] or not stats["errors"], stats
