"""Rebuild demo/trec-dl-2023/ from the full LLMJudge data set (research-only, see README.md there).

    python demo/build_subset.py ../shared/data/trec-dl-2023-llmjudge

Keeps six real (id < 3100000) queries with every judged passage, their NIST labels, and the published
labels of a few LLM judge runs. Deterministic: same source, same files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

QUERY_IDS = ("2004980", "2025253", "2038875", "2044323", "3059866", "3062402")
RUNS = ("Olz-gpt4o", "RMITIR-GPT4o", "RMITIR-llama70B", "h2oloo-fewself", "willia-umbrela1")
OUT = Path(__file__).resolve().parent / "trec-dl-2023"


def main(source: Path) -> None:
    pairs = []
    with (source / "judgments.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if row["query_id"] in QUERY_IDS:
                pairs.append(row)
    keys = {(r["query_id"], r["doc_id"]) for r in pairs}
    runs = []
    with (source / "published_llm_labels.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if (row["query_id"], row["doc_id"]) in keys:
                runs.append({"query_id": row["query_id"], "doc_id": row["doc_id"],
                             "labels": {name: row["labels"][name] for name in RUNS}})
    if len(runs) != len(pairs):
        raise SystemExit(f"published labels cover {len(runs)} of {len(pairs)} pairs")
    with (OUT / "judgments.jsonl").open("w", encoding="utf-8") as fh:
        for row in pairs:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    with (OUT / "published_llm_labels.jsonl").open("w", encoding="utf-8") as fh:
        for row in runs:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(QUERY_IDS)} queries, {len(pairs)} pairs, {len(RUNS)} runs -> {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
