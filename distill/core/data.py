"""Django-free helpers to turn labelled pairs into training examples: soft targets from several
labellers, a seeded split by query, and readers for the TREC DL JSONL files the experiment uses
(bench/distill_trec.py)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

SPLITS = ("train", "validation", "test")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSONL file as a dict; a bad line is an error naming its number."""
    rows = []
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {number} is not valid JSON ({exc.msg})") from exc
    return rows


def clip(value: int, values: Sequence[int]) -> int:
    """A label forced into the scale (published runs hold a few out-of-range values; the LLMJudge
    organizers clip them too)."""
    return int(min(max(int(value), values[0]), values[-1]))


def soft_target(labels: Iterable[int], values: Sequence[int], *, weights: Iterable[float] | None = None) -> list[float]:
    """The labels' distribution over the scale (weighted), in `values` order."""
    labels = [clip(v, values) for v in labels]
    if not labels:
        raise ValueError("a soft target needs at least one label")
    weights = list(weights) if weights is not None else [1.0] * len(labels)
    index = {v: i for i, v in enumerate(values)}
    out = [0.0] * len(values)
    for label, weight in zip(labels, weights, strict=True):
        out[index[label]] += weight
    total = sum(out)
    if total <= 0:
        raise ValueError("the labels' weights sum to zero")
    return [p / total for p in out]


def split_by_query(query_ids: Iterable[str], *, fractions: dict[str, float], seed: int) -> dict[str, str]:
    """{query_id: split}: whole queries shuffled by `seed` and cut by the fractions (each named split
    gets at least one query), so no query is on two sides."""
    unique = sorted(set(query_ids))
    names = [s for s in SPLITS if fractions.get(s, 0) > 0]
    if len(unique) < len(names):
        raise ValueError(f"{len(unique)} queries cannot fill {len(names)} splits")
    random.Random(seed).shuffle(unique)
    total = sum(fractions[s] for s in names)
    counts = {s: max(1, round(len(unique) * fractions[s] / total)) for s in names}
    # the remainder goes to (or comes from) the first split (train)
    counts[names[0]] = len(unique) - sum(counts[s] for s in names[1:])
    if counts[names[0]] < 1:
        raise ValueError(f"{len(unique)} queries are too few for fractions {fractions}")
    out: dict[str, str] = {}
    start = 0
    for name in names:
        for qid in unique[start:start + counts[name]]:
            out[qid] = name
        start += counts[name]
    return out


def trec_dl_2023(folder: Path) -> list[dict[str, Any]]:
    """The LLMJudge TREC DL 2023 pairs with NIST labels and the published LLM runs' labels:
    [{"query_id", "query", "doc_id", "doc", "label", "teachers": {run: label}}] (labels unclipped)."""
    pairs = read_jsonl(Path(folder) / "judgments.jsonl")
    published = {(r["query_id"], r["doc_id"]): r["labels"] for r in read_jsonl(Path(folder) / "published_llm_labels.jsonl")}
    for pair in pairs:
        pair["teachers"] = published.get((pair["query_id"], pair["doc_id"]), {})
    return pairs


def trec_dl_2019(folder: Path) -> list[dict[str, Any]]:
    """The TREC DL 2019 passage pairs with NIST labels: [{"query_id", "query", "doc_id", "doc", "label"}]."""
    return read_jsonl(Path(folder) / "judgments.jsonl")
