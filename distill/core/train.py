"""Training a student from soft targets, resumable and reproducible.

Guarantees:
- Seeded and reproducible on CPU: the heads are initialised after `torch.manual_seed(seed)`, the batch
  order of epoch e is a pure function of (seed, e), and the torch RNG (dropout) is saved with every
  checkpoint, so an interrupted and resumed run ends with the same weights as an uninterrupted one.
- Resumable: `out_dir/checkpoint/state.pt` (model, optimizer, scheduler, epoch and step, RNG states,
  history, early-stopping state) is written atomically at the end of every epoch and every
  `checkpoint_every_steps` steps or `checkpoint_every_seconds` seconds; `resume=True` continues from
  it. A checkpoint of another training set or config is refused, never silently mixed in.
- Cancellable: `should_stop()` is asked before every step; True writes a checkpoint and raises
  TrainingCancelled.
- `out_dir/model/` always holds the best model so far by validation Krippendorff's alpha (ordinal, mean
  over dimensions; early stopping after `patience` epochs without a better one), in save_student's
  format.
- Cheap on CPU: length-bucketed batches padded to their own longest pair (dynamic padding), torch
  threads = the cores this process may use; bf16 autocast on CUDA.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distill.core.model import (
    StudentConfig,
    StudentModel,
    decode_indices,
    load_student,
    resolve_base_model,
    save_student,
)

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "state.pt"
MODEL_DIR = "model"
# Pairs per length bucket = batch_size × this: big enough that batches stay shuffled across the
# epoch, small enough that each batch's pairs have similar lengths (little padding).
BUCKET_BATCHES = 20
# A running loss is recorded for the curves every this many steps.
LOSS_EVERY_STEPS = 5


@dataclass
class Example:
    query_id: str  # the split/grouping key
    query: str
    passage: str  # passage_text(title, body)
    targets: dict[str, list[float]]  # per dimension: probability per level, in DimensionSpec.values order
    weight: float = 1.0


@dataclass
class TrainProgress:
    epoch: int
    epochs: int
    step: int
    steps_total: int
    loss: float | None
    val_alpha: dict[str, float | None] | None
    message: str = ""


@dataclass
class TrainResult:
    model_dir: Path
    manifest: dict
    history: list[dict]
    best_epoch: int
    seconds: float


class TrainingCancelled(Exception):
    """should_stop() asked the run to stop; a checkpoint was written, so resume=True continues it."""


# -- input checks -------------------------------------------------------------------------------------
def validate_examples(train: Sequence[Example], validation: Sequence[Example], config: StudentConfig) -> None:
    """Raise ValueError naming the first problem: an empty split, a dimension with no targets, a
    target of the wrong length or not a distribution, an unknown dimension, a negative weight, or a
    query on both sides."""
    specs = {d.key: d for d in config.dimensions}
    for name, split in (("train", train), ("validation", validation)):
        if not split:
            raise ValueError(f"the {name} split is empty")
        seen: set[str] = set()
        for i, example in enumerate(split):
            if not example.query.strip() or not example.passage.strip():
                raise ValueError(f"{name} example {i} (query {example.query_id}): empty query or passage")
            if not (example.weight >= 0 and math.isfinite(example.weight)):
                raise ValueError(f"{name} example {i} (query {example.query_id}): weight must be a finite number ≥ 0")
            for key, target in example.targets.items():
                if key not in specs:
                    raise ValueError(f"{name} example {i}: dimension {key!r} is not in the config "
                                     f"({', '.join(specs)})")
                if len(target) != len(specs[key].values):
                    raise ValueError(f"{name} example {i}, dimension {key!r}: {len(target)} probabilities for "
                                     f"{len(specs[key].values)} levels {list(specs[key].values)}")
                total = float(sum(target))
                if any(not math.isfinite(p) or p < 0 for p in target) or abs(total - 1.0) > 1e-3:
                    raise ValueError(f"{name} example {i}, dimension {key!r}: target {list(target)} is not a "
                                     f"probability distribution (non-negative, sums to 1)")
                seen.add(key)
        missing = [key for key in specs if key not in seen]
        if missing:
            raise ValueError(f"the {name} split has no targets for dimension(s) {', '.join(missing)}")
    both = {e.query_id for e in train} & {e.query_id for e in validation}
    if both:
        raise ValueError(f"{len(both)} quer{'y is' if len(both) == 1 else 'ies are'} in both train and validation "
                         f"(e.g. {sorted(both)[0]}); split by query")


def examples_hash(train: Sequence[Example], validation: Sequence[Example], config: StudentConfig) -> str:
    """Content hash of the data a run trains on (and so what its checkpoint belongs to)."""
    digest = hashlib.sha256()
    digest.update(json.dumps(config.to_dict()["dimensions"], sort_keys=True).encode())
    for name, split in (("train", train), ("validation", validation)):
        for e in split:
            digest.update(json.dumps([name, e.query_id, e.query, e.passage, e.targets, e.weight],
                                     sort_keys=True, ensure_ascii=False).encode())
            digest.update(b"\n")
    return digest.hexdigest()


# -- helpers --------------------------------------------------------------------------------------------
def _threads(config: StudentConfig) -> int:
    if config.num_threads > 0:
        return config.num_threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def pick_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for but torch sees no CUDA device")
    return name


def median_index(target: Sequence[float]) -> int:
    """The ordinal point estimate of a soft target: the first level whose cumulative mass reaches 1/2."""
    cumulative = np.cumsum(np.asarray(target, dtype=float))
    return int(min(int(np.sum(cumulative < 0.5 - 1e-9)), len(target) - 1))


def class_weights(train: Sequence[Example], config: StudentConfig) -> dict[str, np.ndarray]:
    """Per dimension, per level: (N / (K · n_level))^power from the soft counts of the training split."""
    out = {}
    for spec in config.dimensions:
        counts = np.zeros(len(spec.values))
        for e in train:
            if spec.key in e.targets:
                counts += np.asarray(e.targets[spec.key], dtype=float) * e.weight
        counts = np.maximum(counts, 1e-3 * max(counts.sum(), 1.0))  # a level nobody used: finite weight
        out[spec.key] = (counts.sum() / (len(counts) * counts)) ** config.class_weight_power
    return out


def length_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Length-bucketed batches for one epoch, a pure function of (lengths, batch size, seed, epoch):
    shuffle, sort within buckets of BUCKET_BATCHES batches by length, cut, shuffle the batches."""
    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    bucket = batch_size * BUCKET_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(order), bucket):
        chunk = sorted(order[start:start + bucket], key=lambda i: lengths[i])
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def _autocast(device: str):
    if device == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def _to(features: dict[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in features.items()}


@torch.inference_mode()
def predict_probabilities(model: StudentModel, tokenizer, queries: Sequence[str], passages: Sequence[str], *,
                          batch_size: int = 64, device: str = "cpu") -> dict[str, np.ndarray]:
    """[n, levels] probabilities per dimension, in input order (batches sorted by length inside)."""
    was_training = model.training
    model.eval()
    order = sorted(range(len(queries)), key=lambda i: len(queries[i]) + len(passages[i]))
    out = {d.key: np.zeros((len(queries), len(d.values)), dtype=np.float32) for d in model.config.dimensions}
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        features = _to(model.featurize(tokenizer, [queries[i] for i in idx], [passages[i] for i in idx]), device)
        with _autocast(device):
            probabilities = model.probabilities(model(**features))
        for key, p in probabilities.items():
            out[key][idx] = p.float().cpu().numpy()
    model.train(was_training)
    return out


def decode_probabilities(probabilities: dict[str, np.ndarray], config: StudentConfig,
                         model: StudentModel | None = None) -> dict[str, np.ndarray]:
    """Level values per dimension from predict_probabilities' output, by the config's decoding rule
    (or the model's calibrated cuts when `model` is given and has them) — what StudentModel.decode gives."""
    out = {}
    for spec in config.dimensions:
        cuts = model.heads[spec.key].cuts.cpu() if model is not None else None
        idx = decode_indices(torch.from_numpy(probabilities[spec.key]), config.decoding_rule, cuts=cuts).numpy()
        out[spec.key] = np.asarray(spec.values)[idx]
    return out


def _cache_key(config: StudentConfig, example: Example) -> tuple:
    # Everything that changes a frozen encoder's parts for this pair (not the heads' feature set).
    return (config.base_model, config.max_length, config.pooling, example.query, example.passage)


@torch.no_grad()
def encode_examples(model: StudentModel, tokenizer, examples: Sequence[Example], *, batch_size: int, device: str,
                    should_stop: Callable[[], bool] | None = None,
                    cache: dict | None = None) -> torch.Tensor | None:
    """encode_features of every example (encoder in eval mode), in input order; None if should_stop()
    said stop. (no_grad rather than inference_mode: the heads train on these tensors.)

    `cache`: a dict shared between runs with the SAME unmodified (frozen) base encoder: the encoder's
    parts per pair are kept there, so several variants over the same pairs encode each pair once."""
    was_training = model.training
    model.eval()
    parts: list[dict[str, torch.Tensor] | None] = [None] * len(examples)
    needed = {"joint"} if model.config.uses_joint else set()
    if model.config.uses_bi_encoder:
        needed |= {"query", "passage"}
    if cache is not None:
        for i, example in enumerate(examples):
            hit = cache.get(_cache_key(model.config, example))
            if hit is not None and needed <= hit.keys():
                parts[i] = hit
    todo = sorted((i for i in range(len(examples)) if parts[i] is None),
                  key=lambda i: len(examples[i].query) + len(examples[i].passage))
    for start in range(0, len(todo), batch_size):
        if should_stop is not None and should_stop():
            model.train(was_training)
            return None
        idx = todo[start:start + batch_size]
        features = _to(model.featurize(tokenizer, [examples[i].query for i in idx],
                                       [examples[i].passage for i in idx]), device)
        with _autocast(device):
            encoded = model.encode_parts(**features)
        for row, i in enumerate(idx):
            parts[i] = {k: v[row].float() for k, v in encoded.items()}
            if cache is not None:
                key = _cache_key(model.config, examples[i])
                cache[key] = {**cache.get(key, {}), **parts[i]}
    model.train(was_training)
    if not examples:
        return None
    stacked = {k: torch.stack([p[k] for p in parts]).to(device) for k in needed}  # type: ignore[index]
    return model.combine_parts(stacked)


def validation_alpha(model: StudentModel, tokenizer, validation: Sequence[Example], *, device: str,
                     batch_size: int, features: torch.Tensor | None = None) -> dict[str, float | None]:
    """Krippendorff's alpha (ordinal) per dimension between decoded predictions and the targets'
    median level, over the validation examples that have a target for that dimension. `features`:
    the examples' cached encode_features (a frozen encoder), else they are encoded here."""
    from sage_stats.agreement import krippendorff_alpha

    if features is not None:
        was_training = model.training
        model.eval()
        with torch.inference_mode():
            raw = model.probabilities(model.heads_forward(features))
        model.train(was_training)
        probabilities = {k: v.float().cpu().numpy() for k, v in raw.items()}
    else:
        probabilities = predict_probabilities(model, tokenizer, [e.query for e in validation],
                                              [e.passage for e in validation], batch_size=batch_size, device=device)
    predicted = decode_probabilities(probabilities, model.config, model)
    out: dict[str, float | None] = {}
    for spec in model.config.dimensions:
        rows = [i for i, e in enumerate(validation) if spec.key in validation[i].targets]
        reference = [spec.values[median_index(validation[i].targets[spec.key])] for i in rows]
        matrix = np.vstack([predicted[spec.key][rows], reference]).astype(float)
        out[spec.key] = krippendorff_alpha(matrix, spec.values)["alpha"]
    return out


def _mean_alpha(alphas: dict[str, float | None]) -> float:
    # An undefined alpha (e.g. one predicted class everywhere) counts as no agreement at all.
    return float(np.mean([a if a is not None else -1.0 for a in alphas.values()]))


def _param_groups(model: StudentModel, config: StudentConfig) -> list[dict[str, Any]]:
    """Discriminative learning rates: heads at head_learning_rate, encoder layer l of L at
    learning_rate × layer_lr_decay^(L − l), embeddings lowest; no weight decay on biases and norms."""
    layers = getattr(getattr(model.encoder, "encoder", None), "layer", None)
    n_layers = len(layers) if layers is not None else 0

    def encoder_depth(name: str) -> int:
        if ".layer." in name:
            return int(name.split(".layer.")[1].split(".")[0]) + 1
        if "embeddings" in name:
            return 0
        return n_layers + 1  # pooler and anything above the stack

    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name or name.endswith("cosine_scale")
        if name.startswith("encoder."):
            lr = config.learning_rate * config.layer_lr_decay ** max(0, n_layers + 1 - encoder_depth(name))
        else:
            lr = config.head_learning_rate
        key = (lr, 0.0 if no_decay else config.weight_decay)
        groups.setdefault(key, []).append(param)
    return [{"params": params, "lr": lr, "weight_decay": wd} for (lr, wd), params in groups.items()]


def _batch_loss(model: StudentModel, outputs: dict[str, torch.Tensor], batch: Sequence[Example],
                weights: dict[str, torch.Tensor], device: str) -> torch.Tensor:
    """Σ over dimensions of the weighted mean soft-target loss; a dimension an example lacks adds nothing.

    coral: binary cross-entropy of each P(y > k) against the target's cumulative mass above k.
    classification: cross-entropy against the target distribution.
    """
    total = torch.zeros((), device=device)
    for spec in model.config.dimensions:
        rows = [i for i, e in enumerate(batch) if spec.key in e.targets]
        if not rows:
            continue
        target = torch.tensor([batch[i].targets[spec.key] for i in rows], dtype=torch.float32, device=device)
        example_weight = torch.tensor([batch[i].weight for i in rows], dtype=torch.float32, device=device)
        # Class imbalance: the target's expected class weight multiplies the example's weight.
        example_weight = example_weight * (target @ weights[spec.key])
        raw = outputs[spec.key][rows].float()
        if model.config.head == "coral":
            above = 1.0 - target.cumsum(dim=1)[:, :-1]  # target mass above level k
            per = torch.nn.functional.binary_cross_entropy_with_logits(raw, above.clamp(0, 1), reduction="none").sum(1)
        else:
            per = -(target * torch.log_softmax(raw, dim=1)).sum(1)
        total = total + (per * example_weight).sum() / len(batch)
    return total


@torch.no_grad()
def fit_cuts(model: StudentModel, features: torch.Tensor, train: Sequence[Example]) -> None:
    """Set each head's cuts at the quantiles of the expected level index on the training pairs that
    reproduce the training targets' (weighted) level shares."""
    model.eval()
    probabilities = model.probabilities(model.heads_forward(features))
    for spec in model.config.dimensions:
        rows = [i for i, e in enumerate(train) if spec.key in e.targets]
        p = probabilities[spec.key][rows].float()
        expected = (p * torch.arange(p.shape[1], dtype=p.dtype)).sum(1).cpu().numpy()
        shares = np.zeros(len(spec.values))
        for i in rows:
            shares += np.asarray(train[i].targets[spec.key]) * train[i].weight
        cumulative = np.cumsum(shares / shares.sum())[:-1]
        cuts = np.maximum.accumulate(np.quantile(expected, np.clip(cumulative, 0, 1)))
        model.heads[spec.key].cuts.copy_(torch.tensor(cuts, dtype=torch.float32))


def init_heads_from_cosine(model: StudentModel, features: torch.Tensor, train: Sequence[Example]) -> None:
    """Make each (linear CORAL) head the thresholded cosine: score = scaled cosine, thresholds at the cosine
    quantiles that reproduce the training targets' (weighted) level shares — the zero-shot baseline."""
    cosine = features[:, -1].float()  # combine_parts keeps the raw cosine last
    scale = float(model.cosine_scale.detach())
    with torch.no_grad():
        for spec in model.config.dimensions:
            rows = [i for i, e in enumerate(train) if spec.key in e.targets]
            shares = np.zeros(len(spec.values))
            for i in rows:
                shares += np.asarray(train[i].targets[spec.key]) * train[i].weight
            cumulative = np.clip(np.cumsum(shares / shares.sum())[:-1], 0, 1)
            cuts = np.quantile(cosine[rows].cpu().numpy(), cumulative) * scale
            head = model.heads[spec.key]
            linear = head.score
            assert isinstance(linear, torch.nn.Linear)  # config validation: head_hidden 0
            linear.weight.zero_()
            linear.weight[0, -1] = 1.0
            linear.bias.zero_()
            # thresholds = θ0, θ0 + cumsum(softplus(gap) + 1e-3): invert for the wanted (ordered) cuts
            gaps = np.maximum(np.diff(cuts) - 1e-3, 1e-4)
            head.first_threshold.fill_(float(cuts[0]))
            head.gaps.copy_(torch.as_tensor(np.log(np.expm1(gaps)), dtype=head.gaps.dtype))


# Fields that change how a run is executed, not what it computes: a resumed run may change them.
OPERATIONAL_FIELDS = frozenset({"checkpoint_every_steps", "checkpoint_every_seconds", "num_threads", "device"})


def _result_fields(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in OPERATIONAL_FIELDS}


def _rng_state(device: str) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], device: str) -> None:
    torch.set_rng_state(state["torch"])
    if device == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def _write_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a kill mid-write leaves the previous checkpoint whole


def _read_checkpoint(path: Path) -> dict[str, Any]:
    # Our own file (written by _write_checkpoint); it holds optimizer state and RNG tuples as well as tensors.
    return torch.load(path, map_location="cpu", weights_only=False)


# -- the loop -------------------------------------------------------------------------------------------
def train_student(train: list[Example], validation: list[Example], config: StudentConfig, out_dir: Path, *,
                  on_progress: Callable[[TrainProgress], None] | None = None,
                  should_stop: Callable[[], bool] | None = None,
                  resume: bool = True, extra_manifest: dict | None = None,
                  feature_cache: dict | None = None) -> TrainResult:
    """See the module docstring. `feature_cache` (frozen encoder only): encode_examples' cache, shared
    by runs over the same pairs and base model (bench/distill_trec.py runs several variants that way)."""
    from transformers import AutoTokenizer, get_linear_schedule_with_warmup

    validate_examples(train, validation, config)
    out_dir = Path(out_dir)
    checkpoint_path = out_dir / CHECKPOINT_DIR / CHECKPOINT_FILE
    model_dir = out_dir / MODEL_DIR
    data_hash = examples_hash(train, validation, config)
    device = pick_device(config.device)
    torch.set_num_threads(_threads(config))

    torch.manual_seed(config.seed)
    base = resolve_base_model(config.base_model)
    tokenizer = AutoTokenizer.from_pretrained(str(base), use_fast=True)
    model = StudentModel(config).to(device)
    if config.learning_rate == 0:  # a frozen encoder: only the heads learn
        for param in model.encoder.parameters():
            param.requires_grad_(False)
    optimizer = torch.optim.AdamW(_param_groups(model, config))
    lengths = [len(e.query) + len(e.passage) for e in train]
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    steps_total = steps_per_epoch * config.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * steps_total), steps_total)
    weights = {k: torch.tensor(v, dtype=torch.float32, device=device) for k, v in class_weights(train, config).items()}
    mean_weight = float(np.mean([e.weight for e in train])) or 1.0
    if mean_weight != 1.0:  # weights are relative: normalise so the learning rate means the same
        train = [Example(e.query_id, e.query, e.passage, e.targets, e.weight / mean_weight) for e in train]

    state: dict[str, Any] = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "history": [], "best_alpha": None,
                             "best_epoch": 0, "bad_epochs": 0, "finished": False, "losses": [], "seconds": 0.0}
    if checkpoint_path.exists() and resume:
        saved = _read_checkpoint(checkpoint_path)
        if saved["data_hash"] != data_hash or _result_fields(saved["config"]) != _result_fields(config.to_dict()):
            raise ValueError(f"the checkpoint in {out_dir} belongs to another training set or config; "
                             f"resume=False starts over")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        _set_rng_state(saved["rng"], device)
        state = saved["state"]
    elif checkpoint_path.exists():
        checkpoint_path.unlink()

    clock = [time.monotonic()]

    def tick() -> None:  # training seconds add up across resumed runs
        now = time.monotonic()
        state["seconds"] += now - clock[0]
        clock[0] = now

    def checkpoint() -> None:
        tick()
        _write_checkpoint(checkpoint_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                            "scheduler": scheduler.state_dict(), "rng": _rng_state(device),
                                            "state": state, "data_hash": data_hash, "config": config.to_dict()})

    def report(loss: float | None, alpha: dict[str, float | None] | None, message: str = "") -> None:
        if on_progress is not None:
            on_progress(TrainProgress(epoch=min(state["epoch"] + 1, config.epochs), epochs=config.epochs,
                                      step=state["global_step"], steps_total=steps_total, loss=loss,
                                      val_alpha=alpha, message=message))

    def evaluate_epoch(number: int, train_loss: float | None = None) -> tuple[dict, dict, float, bool]:
        """Validation α after epoch `number` (0: the starting heads); the best model so far is saved."""
        alphas = validation_alpha(model, tokenizer, validation, device=device, batch_size=max(config.batch_size, 64),
                                  features=cache["validation"])
        mean = _mean_alpha(alphas)
        entry = {"epoch": number, "step": state["global_step"], "train_loss": train_loss,
                 "val_alpha": alphas, "val_alpha_mean": mean}
        state["history"].append(entry)
        improved = state["best_alpha"] is None or mean > state["best_alpha"]
        if improved:
            state["best_alpha"], state["best_epoch"], state["bad_epochs"] = mean, number, 0
            save_student(model, tokenizer, model_dir, extra_manifest={
                **(extra_manifest or {}), "training_set_hash": (extra_manifest or {}).get("training_set_hash", data_hash),
                "metrics": {"val_alpha": alphas, "val_alpha_mean": mean, "best_epoch": number,
                            "train_examples": len(train), "validation_examples": len(validation)}})
        else:
            state["bad_epochs"] += 1
        return entry, alphas, mean, improved

    last_checkpoint = time.monotonic()
    frozen = config.learning_rate == 0
    cache: dict[str, torch.Tensor | None] = {"train": None, "validation": None}
    if frozen and not state["finished"]:
        # A frozen encoder gives every pair the same features each epoch: encode once, train the heads
        # on the cache (an epoch then costs milliseconds instead of a forward pass over every pair).
        report(None, None, "encoding the pairs once (frozen encoder)")
        for name, split in (("train", train), ("validation", validation)):
            cache[name] = encode_examples(model, tokenizer, split, batch_size=max(config.batch_size, 64),
                                          device=device, should_stop=should_stop, cache=feature_cache)
            if cache[name] is None:
                checkpoint()
                raise TrainingCancelled(f"stopped while encoding; checkpoint in {checkpoint_path.parent}")
    if config.starts_from_cosine and state["global_step"] == 0 and not state["history"]:
        report(None, None, "starting the heads from the zero-shot cosine")
        features = cache["train"]
        if features is None:
            features = encode_examples(model, tokenizer, train, batch_size=max(config.batch_size, 64), device=device)
        init_heads_from_cosine(model, features, train)
        evaluate_epoch(0)
        checkpoint()
    model.train()
    while not state["finished"] and state["epoch"] < config.epochs:
        epoch = state["epoch"]
        if frozen:
            model.encoder.eval()  # no dropout: the cached features are the eval-mode ones
        batches = length_batches(lengths, config.batch_size, config.seed, epoch)
        running = state.get("running", [0.0, 0])
        for batch_no in range(state["step_in_epoch"], len(batches)):
            if should_stop is not None and should_stop():
                checkpoint()
                raise TrainingCancelled(f"stopped at epoch {epoch + 1}, step {state['global_step']}; "
                                        f"checkpoint in {checkpoint_path.parent}")
            batch = [train[i] for i in batches[batch_no]]
            if cache["train"] is not None:
                outputs = model.heads_forward(cache["train"][batches[batch_no]])
            else:
                features = _to(model.featurize(tokenizer, [e.query for e in batch], [e.passage for e in batch]), device)
                with _autocast(device):
                    outputs = model(**features)
            loss = _batch_loss(model, outputs, batch, weights, device)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            running = [running[0] + float(loss.detach()), running[1] + 1]
            state["running"] = running
            state["global_step"] += 1
            state["step_in_epoch"] = batch_no + 1
            mean_loss = running[0] / running[1]
            if state["global_step"] % LOSS_EVERY_STEPS == 0:
                state["losses"].append([state["global_step"], mean_loss])
            report(mean_loss, None)
            due = (state["global_step"] % max(1, config.checkpoint_every_steps) == 0
                   or time.monotonic() - last_checkpoint >= config.checkpoint_every_seconds)
            if due and batch_no + 1 < len(batches):
                checkpoint()
                last_checkpoint = time.monotonic()

        entry, alphas, mean, improved = evaluate_epoch(epoch + 1, running[0] / max(running[1], 1))
        state["epoch"], state["step_in_epoch"], state["running"] = epoch + 1, 0, [0.0, 0]
        stop_early = state["bad_epochs"] >= config.patience
        state["finished"] = stop_early or state["epoch"] >= config.epochs
        checkpoint()
        last_checkpoint = time.monotonic()
        report(entry["train_loss"], alphas, ("early stop: " if stop_early else "")
               + f"epoch {epoch + 1}: validation alpha {mean:.3f}" + (" (best)" if improved else ""))

    if config.calibrate_cuts and not state.get("calibrated"):
        report(None, None, "fitting decision cuts on the training pairs")
        best, _, manifest = load_student(model_dir, device=device)
        # a frozen encoder's cached features are the best model's too; otherwise encode with the best model
        features = cache["train"] if frozen and cache["train"] is not None else None
        if features is None:
            features = encode_examples(best, tokenizer, train, batch_size=max(config.batch_size, 64), device=device,
                                       cache=feature_cache if frozen else None)
        fit_cuts(best, features, train)
        save_student(best, tokenizer, model_dir, extra_manifest={
            k: v for k, v in manifest.items() if k not in ("format", "base_model", "config", "dimensions", "files", "model_hash")})
        state["calibrated"] = True
        checkpoint()
    tick()
    manifest_path = model_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    # The manifest is outside model_hash, so the final figures can join it without changing the pin.
    manifest["metrics"].update({"epochs_run": state["epoch"], "history": state["history"],
                                "seconds": round(state["seconds"], 1)})
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return TrainResult(model_dir=model_dir, manifest=manifest, history=list(state["history"]),
                       best_epoch=int(state["best_epoch"]), seconds=float(state["seconds"]))


__all__ = ["Example", "TrainProgress", "TrainResult", "TrainingCancelled", "train_student", "validate_examples",
           "examples_hash", "predict_probabilities", "decode_probabilities", "validation_alpha", "length_batches",
           "class_weights", "median_index", "encode_examples"]
