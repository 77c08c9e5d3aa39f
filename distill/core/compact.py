"""Compact encoders: the first N transformer layers of a base encoder, trained to reproduce the base's
mean-pooled, normalised sentence embeddings (embedding distillation, as DistilBERT and TinyBERT shrink
BERT).

Why: on 2 CPU cores a student's cost is its encoder's, layer by layer. The packaged 6-layer MiniLM
labels about 100 pairs/s even in bf16 (BENCHMARKS.md, "Student throughput"); half its layers halve that
cost. Cut without training, the first 3 layers' embeddings rank TREC DL 2023 passages much worse than
all 6 (Spearman with NIST ≈ 0.21 vs 0.33); training them to match the full encoder's embeddings on
unlabelled passages and queries is meant to win that back so the student keeps its cosine feature, but
one epoch on 2 CPU cores did not (BENCHMARKS.md, "Student throughput"): `fidelity_after` in the manifest
says how close a given run came.

The result is an ordinary Hugging Face model folder (config, weights, tokenizer) plus `compact.json`
(base, layers, texts hash, losses, fidelity), so it is named as a student's base model like any local
folder (`StudentConfig.base_model`, the train form's "Base model").
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from distill.core.model import CHARS_PER_TOKEN_CAP, _offline, resolve_base_model

MANIFEST = "compact.json"
# Texts kept apart to measure fidelity (mean cosine between the compact and the base embeddings).
HOLDOUT_SHARE = 0.05
MIN_TEXTS = 20


@dataclass
class CompactResult:
    folder: str
    base_model: str
    layers: int
    base_layers: int
    texts: int
    texts_hash: str
    epochs: int
    losses: list[float] = field(default_factory=list)
    fidelity_before: float = 0.0  # mean cosine to the base's embeddings on held-out texts, cut but untrained
    fidelity_after: float = 0.0
    seconds: float = 0.0


def _native_bf16() -> bool:
    from distill.core.predict import cpu_has_native_bf16

    return cpu_has_native_bf16()


def _pooled(encoder: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    hidden = encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-6)
    return nn.functional.normalize(pooled.float(), dim=-1)


def _batches(tokenizer, texts: Sequence[str], order: Sequence[int], batch_size: int,
             max_length: int) -> list[tuple[list[int], dict[str, torch.Tensor]]]:
    cap = max_length * CHARS_PER_TOKEN_CAP
    out = []
    for start in range(0, len(order), batch_size):
        idx = list(order[start:start + batch_size])
        encoded = tokenizer([texts[i][:cap] for i in idx], truncation=True, max_length=max_length,
                            padding="longest", return_tensors="pt")
        out.append((idx, {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}))
    return out


def _embed_all(encoder: nn.Module, batches, count: int, *, bf16: bool) -> torch.Tensor:
    out = torch.empty(0)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for idx, batch in batches:
            pooled = _pooled(encoder, batch)
            if out.numel() == 0:
                out = torch.empty((count, pooled.shape[1]))
            out[torch.as_tensor(idx)] = pooled
    return out


def texts_hash(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def compact_encoder(base_model: str, layers: int, texts: Sequence[str], out_dir: Path, *, epochs: int = 3,
                    learning_rate: float = 1e-4, batch_size: int = 32, max_length: int = 128, seed: int = 0,
                    progress: Callable[[int, int], None] | None = None) -> CompactResult:
    """Write a compact copy of `base_model` (its first `layers` layers, distilled on `texts`) to `out_dir`.

    `progress(done, total)` counts training steps. Deterministic for a seed on CPU. The folder is written
    whole at the end (a temporary sibling renamed into place), so a failed run leaves nothing half-made.
    """
    from transformers import AutoModel, AutoTokenizer

    _offline()
    unique = sorted({t.strip() for t in texts if t and t.strip()})
    if len(unique) < MIN_TEXTS:
        raise ValueError(f"a compact encoder needs at least {MIN_TEXTS} distinct texts, got {len(unique)}")
    path = resolve_base_model(base_model)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    teacher = AutoModel.from_pretrained(str(path)).eval()
    base_layers = len(teacher.encoder.layer)
    if not 1 <= layers < base_layers:
        raise ValueError(f"layers must be between 1 and {base_layers - 1} (the base has {base_layers}), got {layers}")
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise ValueError(f"{out_dir} already exists; name a new folder")

    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = random.Random(seed)
    shuffled = unique[:]
    rng.shuffle(shuffled)
    held = max(1, int(len(shuffled) * HOLDOUT_SHARE))
    holdout, train = shuffled[:held], shuffled[held:]
    bf16 = _native_bf16()
    # Length-sorted batches pad little; their order is shuffled per epoch.
    train_batches = _batches(tokenizer, train, sorted(range(len(train)), key=lambda i: len(train[i])), batch_size,
                             max_length)
    holdout_batches = _batches(tokenizer, holdout, range(len(holdout)), batch_size, max_length)
    targets = _embed_all(teacher, train_batches, len(train), bf16=bf16)
    holdout_targets = _embed_all(teacher, holdout_batches, len(holdout), bf16=bf16)

    student = copy.deepcopy(teacher)
    student.encoder.layer = nn.ModuleList(list(student.encoder.layer)[:layers])
    student.config.num_hidden_layers = layers
    del teacher

    def fidelity() -> float:
        student.eval()
        embedded = _embed_all(student, holdout_batches, len(holdout), bf16=False)
        return float((embedded * holdout_targets).sum(-1).mean())

    result = CompactResult(folder=out_dir.name, base_model=base_model, layers=layers, base_layers=base_layers,
                           texts=len(unique), texts_hash=texts_hash(unique), epochs=epochs,
                           fidelity_before=fidelity())
    optimizer = torch.optim.AdamW(student.parameters(), lr=learning_rate, weight_decay=0.01)
    total, done = epochs * len(train_batches), 0
    for _ in range(epochs):
        student.train()
        order = list(range(len(train_batches)))
        rng.shuffle(order)
        running = 0.0
        for b in order:
            idx, batch = train_batches[b]
            loss = ((_pooled(student, batch) - targets[torch.as_tensor(idx)]) ** 2).sum(-1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += float(loss.detach())
            done += 1
            if progress is not None:
                progress(done, total)
        result.losses.append(round(running / max(1, len(train_batches)), 6))
    result.fidelity_after = fidelity()
    result.seconds = round(time.perf_counter() - started, 1)

    partial = out_dir.with_name(out_dir.name + ".partial")
    if partial.exists():
        import shutil

        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    student.save_pretrained(str(partial))
    tokenizer.save_pretrained(str(partial))
    (partial / MANIFEST).write_text(json.dumps(asdict(result), indent=2) + "\n")
    partial.rename(out_dir)
    return result


__all__ = ["CompactResult", "compact_encoder", "MANIFEST"]
