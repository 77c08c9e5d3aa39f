"""A small, real world for gate tests: one surface, a baseline and candidates whose rankings are planted
better, worse, equal or unjudged, and an imported judge whose labels grade every served document — so
real comparisons decide, with no language model.

Each query has ten documents d0…d9 with grades 3,3,3,2,2,1,1,0,0,0 (d0 best). Lists are top 5:
    control  d2 d5 d0 d6 d3   (middling; every third query serves each list reversed)
    better   d0 d1 d2 d3 d4   (the five best: an improvement)
    same     d2 d5 d0 d6 d3   (the control's list: no change)
    worse    d9 d8 d7 d6 d5   (the five worst: a regression)
    unjudged x0 … x4          (documents no label covers: coverage 50 %, inconclusive)
"""

from __future__ import annotations

import io
import json

from gates.services import gate_create
from judges.services import judge_create, judge_run_import
from tests.factories import UserFactory, import_traffic_rows, jsonl_bytes, published_version, traffic_row, traffic_surface
from traffic.services import sample_draw

GRADES = [3, 3, 3, 2, 2, 1, 1, 0, 0, 0]
LISTS = {
    "control": ["d2", "d5", "d0", "d6", "d3"],
    "better": ["d0", "d1", "d2", "d3", "d4"],
    "same": ["d2", "d5", "d0", "d6", "d3"],
    "worse": ["d9", "d8", "d7", "d6", "d5"],
}
QUERIES = 12


def rows_for(variant: str, docs: list[str], *, queries: int | None = None) -> list[dict]:
    """Every third query serves the list reversed, so per-query deltas vary and intervals have width."""
    queries = QUERIES if queries is None else queries
    return [traffic_row(variant=variant, query=f"gate query {q}", query_id=f"q{q}", rank=rank, doc_id=doc,
                        title="", url="", body=f"passage {doc} for query {q}", segment="head")
            for q in range(queries) for rank, doc in enumerate(docs[::-1] if q % 3 == 1 else docs, 1)]


def traffic_file(variant: str, docs: list[str], *, queries: int | None = None) -> bytes:
    return jsonl_bytes(rows_for(variant, docs, queries=queries))


def gate_world(*, slug: str = "gate-web", gate_name: str = "web-gate", **gate_fields):
    """The surface, variants and traffic above, an imported judge labelling d0…d9 of every query, and a
    gate (baseline: control). Returns (gate, analyst)."""
    surface = traffic_surface(slug, variants=[("control", "control"), ("better", "treatment"),
                                              ("same", "treatment"), ("worse", "treatment"),
                                              ("pool", "treatment")])
    rows = []
    for variant, docs in LISTS.items():
        rows += rows_for(variant, docs)
    # A "pool" variant serves all ten documents, so the label sample holds every one of each query.
    rows += rows_for("pool", [f"d{i}" for i in range(10)])
    import_traffic_rows(surface, rows, filename="gate-world.jsonl")
    version = published_version(surface)
    analyst = UserFactory(username="gate-analyst", roles=["analyst"])
    judge = judge_create(name=f"imported {slug}", surface=surface, user=analyst, backend="imported",
                         model_name="gpt-4o-labels", policy_version=version)
    labels_sample = sample_draw(surface=surface, name="label pool", strategy="top_k", params={"k": 10}, seed=1,
                                user=analyst)
    lines = [json.dumps({"query_id": f"q{q}", "doc_id": f"d{i}", "labels": {"relevance": GRADES[i]}})
             for q in range(QUERIES) for i in range(10)]
    report = judge_run_import(version=judge, sample=labels_sample, stream=io.BytesIO("\n".join(lines).encode()),
                              user=analyst)
    assert not report.errors, report.errors
    fields = {"name": gate_name, "surface": surface, "baseline": surface.variants.get(name="control"),
              "judge_version": judge, "k": 5, "metrics": {"ndcg@5": -0.02, "precision@5": -0.05}, "alpha": 0.05,
              "min_coverage": 0.9, "timeout_s": 60}
    fields.update(gate_fields)
    return gate_create(user=analyst, **fields), analyst
