"""A judged sample with human labels: a judge run (imported labels) and NIST-like human labels."""

from __future__ import annotations

import io
import json

from judges.services import judge_create, judge_run_import
from review.services import human_label_import
from tests.factories import UserFactory, published_version, ranked_traffic, traffic_surface
from traffic.services import sample_draw



def calibrated_run(*, judge_labels: list[int], human_labels: list[list[int]], queries: int = 2, slug: str = "cal"):
    """len(judge_labels) items over `queries` queries; human_labels[r][i] is reviewer r's label of item i."""
    depth = len(judge_labels) // queries
    surface = traffic_surface(slug)
    ranked_traffic(surface, queries=queries, depth=depth, shared=depth)
    version = published_version(surface)
    analyst = UserFactory(username="cal-analyst", roles=["analyst", "reviewer"])
    sample = sample_draw(surface=surface, name="cal", strategy="top_k", params={"k": depth, "variants": ["control"]},
                         seed=1, user=analyst)
    items = [si.item for si in sample.sample_items.select_related("item__query", "item__document").order_by("position")]
    for r, labels in enumerate(human_labels):
        lines = b"".join(json.dumps({"reviewer": f"human{r}", "item": item.hash, "labels": {"relevance": v},
                                     "rationale": f"human {r} says {v}"}).encode() + b"\n"
                         for item, v in zip(items, labels) if v is not None)
        human_label_import(source=io.BytesIO(lines), policy_version=version, user=analyst)
    judge_version = judge_create(name=f"judge-{slug}", surface=surface, user=analyst, backend="imported",
                                 model_name="m", policy_version=version, precedent_k=0)
    lines = b"".join(json.dumps({"query_id": i.query.external_id, "doc_id": i.document.external_id,
                                 "labels": {"relevance": v}, "rationale": f"judge says {v}"}).encode() + b"\n"
                     for i, v in zip(items, judge_labels))
    report = judge_run_import(version=judge_version, sample=sample, stream=io.BytesIO(lines), user=analyst)
    assert not report.errors, report.errors
    return report.run, items, analyst
