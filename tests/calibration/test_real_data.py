"""The agreement service on real data: NIST labels vs the 33 published LLMJudge runs, end to end
through the database (traffic import → label import → imported judge runs → agreement), matched
against the table in ../shared/data/trec-dl-2023-llmjudge/README.md to 3 decimals."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from calibration.selectors import agreement_run_vs_humans
from judges.services import judge_create, judge_run_import
from review.services import human_label_import
from tests.factories import UserFactory, import_traffic_rows, published_version, traffic_surface
from traffic.services import sample_draw

ROOT = Path(__file__).resolve().parents[2]
CANDIDATES = [ROOT.parent / "shared" / "data" / "trec-dl-2023-llmjudge", ROOT / "shared" / "data" / "trec-dl-2023-llmjudge"]
DATA = next((p for p in CANDIDATES if (p / "judgments.jsonl").exists()), None)

pytestmark = pytest.mark.skipif(DATA is None, reason="../shared/data/trec-dl-2023-llmjudge is not beside this checkout")


def published_table() -> dict[str, dict[str, float]]:
    """run → {'kappa', 'kappa_quadratic', 'alpha'} from the README's 'shared' columns."""
    table = {}
    for line in (DATA / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 10 and re.fullmatch(r"-?\d\.\d{3}", cells[-1]):
            table[cells[0]] = {"kappa": float(cells[7]), "kappa_quadratic": float(cells[8]), "alpha": float(cells[9])}
    return table


@pytest.mark.django_db
def test_agreement_reproduces_the_published_table():
    expected = published_table()
    assert len(expected) == 33
    pairs = [json.loads(line) for line in (DATA / "judgments.jsonl").open(encoding="utf-8")]
    analyst = UserFactory(username="data-analyst", roles=["analyst"])
    surface = traffic_surface("llmjudge", variants=(("pool", "control"),))
    rank: dict[str, int] = {}
    rows = []
    for p in pairs:
        rank[p["query_id"]] = rank.get(p["query_id"], 0) + 1
        # Some MS MARCO v2 passages are 200k+ characters of scraped junk; agreement never reads the text.
        # Documents are content-addressed and MS MARCO has duplicate texts under different ids that NIST
        # judged separately, so the passage id goes into the url to keep every judged pair its own item.
        rows.append({"variant": "pool", "query": p["query"], "query_id": p["query_id"], "rank": rank[p["query_id"]],
                     "doc_id": p["doc_id"], "body": p["doc"][:5000],
                     "url": f"https://msmarco-v2.invalid/{p['doc_id']}"})
    import_traffic_rows(surface, rows, filename="llmjudge-pool.jsonl")
    version = published_version(surface)
    sample = sample_draw(surface=surface, name="all judged pairs", strategy="top_k",
                         params={"k": 1000, "variants": ["pool"]}, seed=0, user=analyst)
    assert sample.item_count == len(pairs) == 3460
    nist = b"".join(json.dumps({"reviewer": "nist", "query": p["query"], "doc_id": p["doc_id"],
                                "labels": {"relevance": p["label"]}}).encode() + b"\n" for p in pairs)
    human_label_import(source=io.BytesIO(nist), policy_version=version, user=analyst)

    raw = (DATA / "published_llm_labels.jsonl").read_bytes()
    mismatches = []
    for run_name, figures in sorted(expected.items()):
        judge_version = judge_create(name=run_name, surface=surface, user=analyst, backend="imported",
                                     model_name=run_name, policy_version=version, precedent_k=0)
        report = judge_run_import(
            version=judge_version, sample=sample, stream=io.BytesIO(raw), user=analyst,
            transform=lambda row, name=run_name: {**row, "labels": {"relevance": max(0, min(3, row["labels"][name]))}},
        )
        assert report.errors == [], (run_name, report.errors[:3])
        [relevance] = agreement_run_vs_humans(report.run, n_resamples=200)
        assert relevance.n == 3460 and relevance.n_queries == 17
        for stat, value in figures.items():
            if round(relevance.estimates[stat], 3) != value:
                mismatches.append((run_name, stat, relevance.estimates[stat], value))
        low, high = relevance.ci["kappa"]
        assert low <= relevance.estimates["kappa"] <= high
    assert mismatches == []
