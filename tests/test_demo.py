import json
from pathlib import Path

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

DEMO = Path(__file__).resolve().parent.parent / "demo" / "trec-dl-2023"


def test_the_demo_subset_is_small_real_and_attributed():
    files = list(DEMO.iterdir())
    assert sum(f.stat().st_size for f in files) < 2_000_000
    pairs = [json.loads(line) for line in (DEMO / "judgments.jsonl").open(encoding="utf-8")]
    queries = {p["query_id"] for p in pairs}
    assert 5 <= len(queries) <= 6 and all(int(q) < 3_100_000 for q in queries)
    assert {p["label"] for p in pairs} == {0, 1, 2, 3}
    runs = [json.loads(line) for line in (DEMO / "published_llm_labels.jsonl").open(encoding="utf-8")]
    assert {(r["query_id"], r["doc_id"]) for r in runs} == {(p["query_id"], p["doc_id"]) for p in pairs}
    assert {"Olz-gpt4o", "RMITIR-GPT4o", "RMITIR-llama70B"} <= set(runs[0]["labels"])
    readme = (DEMO / "README.md").read_text()
    assert "research-only" in readme.lower() and "MS MARCO" in readme and "NIST" in readme


def test_the_subset_matches_the_shared_data_when_present():
    source = DEMO.parent.parent.parent / "shared" / "data" / "trec-dl-2023-llmjudge" / "judgments.jsonl"
    if not source.exists():
        source = DEMO.parent.parent.parent.parent / "shared" / "data" / "trec-dl-2023-llmjudge" / "judgments.jsonl"
    if not source.exists():
        pytest.skip("../shared/data/trec-dl-2023-llmjudge is not beside this checkout")
    ours = {(p["query_id"], p["doc_id"]): p for p in map(json.loads, (DEMO / "judgments.jsonl").open())}
    theirs = {}
    for line in source.open(encoding="utf-8"):
        row = json.loads(line)
        if row["query_id"] in {q for q, _ in ours}:
            theirs[(row["query_id"], row["doc_id"])] = row
    assert ours == theirs  # every judged passage of each query, texts and labels unchanged


@pytest.mark.django_db
def test_load_demo_is_idempotent_and_creates_a_login(capsys):
    call_command("load_demo")
    call_command("load_demo")
    out = capsys.readouterr().out
    assert "demo-admin" in out and "sage-demo" in out
    assert authenticate(username="demo-admin", password="sage-demo") is not None
