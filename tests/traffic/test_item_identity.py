"""A result's identity is the id its source gave it: two doc_ids with the same text are two items,
and every label given for a (query, doc_id) finds its item (issue 12)."""

from __future__ import annotations

import importlib
import io
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.db import connection

from judges.models import Judgment
from judges.services import judge_create, judge_run_import
from review.models import HumanLabel
from review.services import human_label_import
from tests.factories import (
    UserFactory,
    import_traffic_rows,
    jsonl_bytes,
    published_version,
    traffic_row,
    traffic_surface,
)
from traffic.models import Document, Item
from traffic.rows import document_hash
from traffic.services import sample_draw

ROOT = Path(__file__).resolve().parents[2]
DATA = next((p for p in (ROOT.parent / "shared" / "data" / "trec-dl-2023-llmjudge",
                         ROOT / "shared" / "data" / "trec-dl-2023-llmjudge") if (p / "judgments.jsonl").exists()), None)
needs_data = pytest.mark.skipif(DATA is None, reason="../shared/data/trec-dl-2023-llmjudge is not beside this checkout")

# Two queries whose judged pools hold passages with the same text under different MS MARCO ids
# (13 and 9 such repeats; the README has the counts per query).
QUERIES = ("2040064", "2044323")

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def judged_pairs() -> list[dict]:
    with (DATA / "judgments.jsonl").open(encoding="utf-8") as fh:
        return [row for row in map(json.loads, fh) if row["query_id"] in QUERIES]


def import_pool(surface, pairs: list[dict]):
    """Every judged pair as one result of the variant 'pool', ranked in file order per query."""
    rank: Counter = Counter()
    rows = []
    for p in pairs:
        rank[p["query_id"]] += 1
        rows.append({"variant": "pool", "query": p["query"], "query_id": p["query_id"], "rank": rank[p["query_id"]],
                     "doc_id": p["doc_id"], "body": p["doc"][:20_000]})
    return import_traffic_rows(surface, rows, filename="pool.jsonl")


@needs_data
def test_every_judged_trec_pair_is_its_own_item_and_every_label_finds_it():
    pairs = judged_pairs()
    texts = Counter((p["query_id"], p["doc"][:20_000]) for p in pairs)
    assert sum(n - 1 for n in texts.values()) == 22, "the chosen queries repeat passage texts under other ids"
    analyst = UserFactory(username="trec-analyst", roles=["analyst"])
    surface = traffic_surface("trec", variants=(("pool", "control"),))

    result = import_pool(surface, pairs)

    assert result.traffic_import.stats["new_items"] == len(pairs) == Item.objects.count() == 212
    by_pair = Counter(Item.objects.values_list("query__external_id", "document__external_id"))
    assert by_pair == Counter((p["query_id"], p["doc_id"]) for p in pairs)

    version = published_version(surface)
    labels = jsonl_bytes([{"assessor": "nist", "query": p["query"], "doc_id": p["doc_id"],
                           "labels": {"relevance": p["label"]}} for p in pairs])
    stats = human_label_import(source=io.BytesIO(labels), policy_version=version, user=analyst)
    assert stats["created"] == len(pairs) and stats["skipped"] == 0
    stored = {(q, d): labels for q, d, labels in
              HumanLabel.objects.values_list("item__query__external_id", "item__document__external_id", "labels")}
    assert stored == {(p["query_id"], p["doc_id"]): {"relevance": p["label"]} for p in pairs}

    sample = sample_draw(surface=surface, name="pool", strategy="top_k", params={"k": 1000, "variants": ["pool"]},
                         seed=0, user=analyst)
    assert sample.item_count == len(pairs)
    judge = judge_create(name="imported", surface=surface, user=analyst, backend="imported", model_name="elsewhere",
                         policy_version=version, precedent_k=0)
    judged = jsonl_bytes([{"query_id": p["query_id"], "doc_id": p["doc_id"], "labels": {"relevance": p["label"]}}
                          for p in pairs])
    report = judge_run_import(version=judge, sample=sample, stream=io.BytesIO(judged), user=analyst)
    assert report.errors == [] and Judgment.objects.filter(run=report.run).count() == len(pairs)


def test_two_ids_with_the_same_text_are_two_items_and_the_same_id_again_is_one():
    surface = traffic_surface()
    result = import_traffic_rows(surface, [
        traffic_row(rank=1, doc_id="a", body="The same passage."),
        traffic_row(rank=2, doc_id="b", body="The same passage."),
        traffic_row(variant="treatment", rank=1, doc_id="a", body="The same passage."),
    ])
    assert result.traffic_import.stats == {"new_queries": 1, "new_documents": 2, "new_items": 2, "entries": 3}
    again = import_traffic_rows(surface, [traffic_row(rank=5, doc_id="b", body="The same passage.")],
                                filename="2.jsonl")
    assert again.traffic_import.stats["new_items"] == 0
    assert sorted(Item.objects.values_list("document__external_id", flat=True)) == ["a", "b"]


def test_an_id_whose_text_changed_is_a_second_document_not_a_rewrite():
    """What was judged was the old text: the new one is a new document, the old keeps its labels."""
    surface = traffic_surface()
    import_traffic_rows(surface, [traffic_row(doc_id="a", body="Old text.")])
    import_traffic_rows(surface, [traffic_row(doc_id="a", body="New text.")], filename="later.jsonl")
    assert sorted(Document.objects.values_list("body", flat=True)) == ["New text.", "Old text."]


def test_identical_text_under_another_id_reuses_the_judgment_through_the_prompt_cache(fault_endpoint, run_inline):
    """Two items, one prompt: the second item's run copies the first one's judgment at no cost."""
    surface = traffic_surface("cache-web", variants=(("a", "control"), ("b", "treatment")))
    import_traffic_rows(surface, [traffic_row(variant="a", doc_id="x1", body="Blanch for two minutes."),
                                  traffic_row(variant="b", doc_id="x2", body="Blanch for two minutes.")])
    analyst = UserFactory(username="cache-analyst", roles=["analyst"])
    version = published_version(surface)
    judge = judge_create(name="cached", surface=surface, user=analyst, backend="openai", model_name="test-model",
                         endpoint_name="fault", policy_version=version, precedent_k=0,
                         price_in_per_m=Decimal("1"), price_out_per_m=Decimal("1"))
    first, second = (sample_draw(surface=surface, name=v, strategy="top_k", params={"k": 1, "variants": [v]}, seed=0,
                                 user=analyst) for v in ("a", "b"))
    assert first.sample_items.get().item_id != second.sample_items.get().item_id
    run_inline(judge, first, analyst)
    reused = run_inline(judge, second, analyst)
    assert reused.cached_items == 1 and reused.cost == 0


def test_the_migration_rekeys_stored_documents_as_the_importers_key_them():
    """0006 recomputes every key in the database (SQL on PostgreSQL, Python on SQLite): a later
    import of the same rows finds the documents instead of adding copies."""
    migration = importlib.import_module("traffic.migrations.0006_document_key_includes_id")
    docs = [Document.objects.create(content_hash=f"old-{n}", external_id=f"d\t{n}", title="Tï", url="u",
                                    body=f"b{n} ✓ \\N") for n in range(3)]
    # The migration's own function, on this test's connection (a schema editor cannot open inside
    # the test's transaction on SQLite).
    editor = SimpleNamespace(connection=connection, execute=lambda sql: connection.cursor().execute(sql))
    migration.forwards(None, editor)
    for doc in docs:
        doc.refresh_from_db()
        assert doc.content_hash == document_hash(doc_id=doc.external_id, title="Tï", url="u", body=doc.body)
