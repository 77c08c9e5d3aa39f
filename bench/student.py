"""Student throughput on real TREC DL pairs: naive loops and our predictor side by side, in one run.

    .venv/bin/python bench/student.py                       # CPU, 2000 pairs, 3 repeats
    .venv/bin/python bench/student.py --features interaction  # the interaction student (no joint pass)
    .venv/bin/python bench/student.py --device cuda --pairs 50000 --naive-pairs 2000

Every figure is end to end: raw (query, passage) text in, decoded labels out, tokenisation included;
model loading is excluded (and printed apart). Pairs are a seeded sample of the TREC DL 2019 passage
judgments (and 2023's where present), ../shared/data relative to the repository.

What is measured (each the median of --repeats runs over the same pairs):

- naive HF loop: what a first transformers script does. AutoModelForSequenceClassification over the
  packaged 6-layer MiniLM, whatever the student's encoder (4 labels), one pair at a time, `tokenizer(query, passage, truncation=True,
  max_length=L, padding="max_length")`, float32, `torch.no_grad()`, argmax. Its head is untrained:
  this row measures speed only. This is the kind of loop the issue's 49 pairs/s (2 CPU cores) and
  ~2,200 pairs/s (H100) describe.
- naive student loop: the same student model as ours, one pair at a time (`featurize` of one pair, so
  no padding), float32, `torch.no_grad()`, `decode`. It isolates what the inference path buys.
- ours: `distill.core.predict.build_predictor(model, quantize=Q).predict(pairs)` for every execution
  path Q, with its label agreement with our float path ("none") on the same pairs.

The model is --model (a student folder, e.g. one bench/distill_trec.py left), else a reference student
trained here once with the StudentConfig defaults (1 epoch on 600 DL 2019 pairs whose queries are not in
the measured sample) and kept under var/bench-student/ for later runs, so agreement is measured on a model
that learnt something. Delete that folder after changing the defaults. With --compact-layers N the
reference student's base is a compact encoder (distill.core.compact: the MiniLM's first N layers,
distilled to reproduce its embeddings on the DL 2019 texts, once, under var/bench-student/encoders/).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from distill.core.model import DimensionSpec, StudentConfig, load_student, passage_text  # noqa: E402
from distill.core.predict import Pair, build_predictor, cpu_has_native_bf16, cpu_threads  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
SOURCES = [DATA / "trec-dl-2019-passage" / "judgments.jsonl", DATA / "trec-dl-2023-llmjudge" / "judgments.jsonl"]
REFERENCE_DIR = ROOT / "var" / "bench-student"
# Queries of DL 2019 the reference student trains on; the measured sample never holds them.
TRAIN_QUERIES = 8


def read_rows() -> list[dict]:
    rows = []
    for path in SOURCES:
        if path.is_file():
            with path.open() as handle:
                rows += [json.loads(line) for line in handle if line.strip()]
    if not rows:
        raise SystemExit(f"no TREC DL judgments under {DATA}")
    return rows


def training_queries(rows: list[dict]) -> set[str]:
    dl2019 = sorted({r["query_id"] for r in rows if not r["doc_id"].startswith("msmarco_")})
    return set(dl2019[:TRAIN_QUERIES])


def compact_reference_encoder(rows: list[dict], layers: int) -> Path:
    """A compact encoder of the packaged MiniLM's first `layers` layers, distilled once under
    var/bench-student/encoders/ on the DL 2019 passages and queries of the reference student's training
    queries plus every DL 2019 passage text (unlabelled; the measured sample's labels are never read)."""
    from distill.core.compact import compact_encoder
    from distill.core.model import PACKAGED_MINILM

    folder = REFERENCE_DIR / "encoders" / f"minilm-l{layers}"
    if not (folder / "config.json").is_file():
        texts = [r["doc"] for r in rows if not r["doc_id"].startswith("msmarco_")]
        texts += [r["query"] for r in rows if not r["doc_id"].startswith("msmarco_")]
        print(f"distilling a {layers}-layer compact encoder into {folder} (once) ...", file=sys.stderr, flush=True)
        result = compact_encoder(PACKAGED_MINILM, layers, texts, folder)
        print(f"  {result.seconds:.0f} s; fidelity {result.fidelity_before:.3f} → {result.fidelity_after:.3f}",
              file=sys.stderr, flush=True)
    return folder


def reference_student(rows: list[dict], features: str = "", base_model: Path | None = None) -> Path:
    """The reference student of `features` (default: StudentConfig's) on `base_model` (default: the packaged
    MiniLM), trained once under var/bench-student/."""
    from distill.core.train import Example, train_student

    reference_dir = REFERENCE_DIR / ((features or StudentConfig.features) + (f"@{base_model.name}" if base_model else ""))
    model_dir = reference_dir / "model"
    if (model_dir / "manifest.json").is_file():
        return model_dir
    held = training_queries(rows)
    pool = [r for r in rows if r["query_id"] in held]
    random.Random(1).shuffle(pool)

    def example(row: dict) -> Example:
        target = [0.0] * 4
        target[int(row["label"])] = 1.0
        return Example(row["query_id"], row["query"], passage_text("", row["doc"]), {"relevance": target})

    validation_queries = sorted(held)[:2]
    train = [example(r) for r in pool if r["query_id"] not in validation_queries][:600]
    validation = [example(r) for r in pool if r["query_id"] in validation_queries][:200]
    config = StudentConfig(dimensions=[DimensionSpec("relevance", (0, 1, 2, 3))], epochs=1,
                           **({"features": features} if features else {}),
                           **({"base_model": str(base_model)} if base_model else {}))
    print(f"training a reference student into {model_dir} (once) ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    train_student(train, validation, config, reference_dir)
    print(f"  trained in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return model_dir


def sample_pairs(rows: list[dict], n: int, seed: int) -> list[Pair]:
    held = training_queries(rows)
    pool = [r for r in rows if r["query_id"] not in held]
    rng = random.Random(seed)
    chosen = rng.sample(pool, n) if n <= len(pool) else [rng.choice(pool) for _ in range(n)]
    return [Pair(query=r["query"], title="", body=r["doc"]) for r in chosen]


def timed(fn, repeats: int) -> tuple[float, object]:
    """(median seconds, result of the last repeat)."""
    seconds, result = [], None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        result = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def naive_hf(pairs: list[Pair], device: str, max_length: int):
    """The naive loop over the packaged 6-layer MiniLM, whatever the measured student's encoder (a compact
    student must not make the baseline faster too)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from distill.core.model import PACKAGED_MINILM, resolve_base_model

    base = resolve_base_model(PACKAGED_MINILM)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=4)
    model = model.to(device).eval()

    def run() -> list[int]:
        out = []
        with torch.no_grad():
            for pair in pairs:
                features = tokenizer(pair.query, passage_text(pair.title, pair.body), truncation=True,
                                     max_length=max_length, padding="max_length", return_tensors="pt").to(device)
                out.append(int(model(**features).logits.argmax(-1).item()))
        return out

    return run


def naive_student(model_dir: Path, pairs: list[Pair], device: str):
    model, tokenizer, _ = load_student(model_dir, device=device)
    keys = [d.key for d in model.config.dimensions]

    def run() -> list[dict[str, int]]:
        out = []
        with torch.no_grad():
            for pair in pairs:
                features = model.featurize(tokenizer, [pair.query], [passage_text(pair.title, pair.body)])
                labels = model.decode(model(**{k: v.to(device) for k, v in features.items()}))
                out.append({k: int(labels[k].item()) for k in keys})
        return out

    return run


def agreement(labels: list[dict[str, int]], reference: list[dict[str, int]]) -> float:
    return sum(a == b for a, b in zip(labels, reference, strict=True)) / len(reference)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2000, help="pairs our predictor labels per repeat")
    parser.add_argument("--naive-pairs", type=int, default=300,
                        help="pairs the naive loops label per repeat (the first of the same sample; a rate is a rate)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", type=Path, help="a student model folder (default: a reference student trained once)")
    parser.add_argument("--features", choices=["joint", "interaction", "joint+interaction"], default="",
                        help="the reference student's feature set (default: StudentConfig's); ignored with --model")
    parser.add_argument("--compact-layers", type=int, default=0,
                        help="train the reference student on a compact encoder of this many layers (distilled once)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--paths", default="", help="comma-separated execution paths (default: all for the device)")
    parser.add_argument("--batch-size", type=int, default=None, help="pairs per forward (default: the predictor's)")
    parser.add_argument("--threads", type=int, default=None, help="torch/ORT threads (default: this process's cores)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rows = read_rows()
    base_model = compact_reference_encoder(rows, args.compact_layers) if args.compact_layers and not args.model else None
    model_dir = args.model or reference_student(rows, args.features, base_model)
    pairs = sample_pairs(rows, args.pairs, args.seed)
    naive_pairs = pairs[:args.naive_pairs]
    threads = args.threads or cpu_threads()
    torch.set_num_threads(threads)
    paths = [p for p in args.paths.split(",") if p] or (
        ["none", "bf16"] if args.device == "cuda"
        else ["none", "int8", "onnx", "onnx-int8"] + (["bf16"] if cpu_has_native_bf16() else [])
        + (["openvino"] if "joint" not in str(json.loads((model_dir / "manifest.json").read_text())["config"]
                                               .get("features")) else []))
    load_before = os.getloadavg()
    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or platform.machine()
    print(f"student throughput · {len(pairs)} pairs (naive loops: {len(naive_pairs)}) · {args.repeats} repeats · "
          f"device {args.device} ({device_name}) · {threads} threads · torch {torch.__version__} · "
          f"load average {load_before[0]:.1f} · model {model_dir.name}", file=sys.stderr, flush=True)

    results: list[tuple[str, int, float, str, float | None]] = []  # (row, pairs, median s, note, agreement)
    config = json.loads((model_dir / "manifest.json").read_text())["config"]
    max_length = int(config["max_length"])
    print(f"  student: features {config.get('features', 'joint')}, cosine {config.get('cosine_feature')}, "
          f"max_length {max_length}", file=sys.stderr, flush=True)
    seconds, _ = timed(naive_hf(naive_pairs, args.device, max_length), args.repeats)
    name = f"naive HF loop (packaged 6-layer MiniLM, 1 pair/forward, padded to {max_length}, fp32)"
    results.append((name, len(naive_pairs), seconds, "", None))
    print(f"  naive HF: {len(naive_pairs) / seconds:.1f} pairs/s", file=sys.stderr, flush=True)
    seconds, naive_labels = timed(naive_student(model_dir, naive_pairs, args.device), args.repeats)
    results.append(("naive student loop (1 pair/forward, fp32)", len(naive_pairs), seconds, "", None))
    print(f"  naive student: {len(naive_pairs) / seconds:.1f} pairs/s", file=sys.stderr, flush=True)

    reference: list[dict[str, int]] | None = None
    for path in paths:
        started = time.perf_counter()
        predictor = build_predictor(model_dir, quantize=path, device=args.device, threads=threads)
        load_s = time.perf_counter() - started
        seconds, predictions = timed(lambda: predictor.predict(pairs, batch_size=args.batch_size), args.repeats)
        labels = [p.labels for p in predictions]
        if reference is None:
            reference = labels
            # The float predictor must label exactly as the one-at-a-time student does.
            same = agreement(labels[:len(naive_labels)], naive_labels)
            note = f"load {load_s:.1f} s; = naive student on {same:.1%}"
        else:
            note = f"load {load_s:.1f} s"
        results.append((f"ours: {path} (batch {args.batch_size or predictor.batch_size})", len(pairs), seconds, note,
                        agreement(labels, reference)))
        print(f"  {path}: {len(pairs) / seconds:.1f} pairs/s", file=sys.stderr, flush=True)
        del predictor

    load_after = os.getloadavg()
    naive_rate = results[0][1] / results[0][2]
    student_rate = results[1][1] / results[1][2]
    print(f"\nDevice {args.device} ({device_name}), {threads} threads, load average {load_before[0]:.1f} → "
          f"{load_after[0]:.1f}; model {model_dir.name} (features {config.get('features', 'joint')}); "
          f"medians of {args.repeats} repeats.\n")
    print("| path | pairs | median s | pairs/s | × naive HF | × naive student | labels = float path | note |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, n, seconds, note, agree in results:
        rate = n / seconds
        print(f"| {name} | {n} | {seconds:.2f} | {rate:,.1f} | {rate / naive_rate:.2f} | {rate / student_rate:.2f} | "
              f"{'' if agree is None else f'{agree:.2%}'} | {note} |")


if __name__ == "__main__":
    main()
