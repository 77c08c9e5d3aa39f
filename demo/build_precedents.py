"""Rebuild demo/trec-dl-2019/precedents.jsonl: eight precedents from TREC DL 2019 (other queries than the
2023 calibration subset, so no calibration item leaks into the judge prompt), two per relevance level.

    python demo/build_precedents.py ../shared/data/trec-dl-2019-passage
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

QUERIES = ("how long is life cycle of flea", "what is famvir prescribed for")
CLAUSES = {3: "perfectly-relevant-3", 2: "highly-relevant-2", 1: "related-1", 0: "irrelevant-0"}
WHY = {
    3: "NIST assessors rated this 3: the passage is about exactly what the query asks and states the answer outright.",
    2: "NIST assessors rated this 2: the passage contains an answer, but it is partial or buried in other material.",
    1: "NIST assessors rated this 1: the passage is on the query's topic but never answers the question.",
    0: "NIST assessors rated this 0: the passage shares words with the query but is about something else.",
}
OUT = Path(__file__).resolve().parent / "trec-dl-2019" / "precedents.jsonl"


def main(source: Path) -> None:
    rows = [json.loads(line) for line in (source / "judgments.jsonl").open(encoding="utf-8")]
    picked = []
    for query in QUERIES:
        for label in (3, 2, 1, 0):
            candidates = sorted((r for r in rows if r["query"] == query and r["label"] == label
                                 and 120 <= len(r["doc"]) <= 700), key=lambda r: r["doc_id"])
            r = candidates[0]
            picked.append({"query": r["query"], "title": "", "body": r["doc"],
                           "url": "", "labels": {"relevance": label}, "rationale": WHY[label],
                           "clause": CLAUSES[label], "tags": ["trec-dl-2019", f"label-{label}"],
                           "status": "accepted",
                           "metadata": {"source": "TREC DL 2019 passage", "query_id": r["query_id"], "doc_id": r["doc_id"]}})
    OUT.parent.mkdir(exist_ok=True)
    with OUT.open("w", encoding="utf-8") as fh:
        for p in picked:
            fh.write(json.dumps(p, ensure_ascii=False) + "\n")
    print(f"{len(picked)} precedents -> {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
