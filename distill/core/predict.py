"""Fast batch inference for a student model folder: what the `student` judge backend and
`manage.py distill_predict` call.

Guarantees:

- Same order: `Predictor.predict` returns one Prediction per pair, in the order of the pairs. Inside, the
  pairs are sorted by length so each batch pads to its own longest pair (little padding), and the
  results are put back in place.
- The model's own labels: a prediction's labels are `StudentModel.decode` of the outputs of the chosen
  execution path, and its probabilities `StudentModel.probabilities` of them. With `quantize="none"`
  the outputs are the model's float forward itself; the other paths are faster copies of that forward
  (int8 weights, ONNX Runtime, bf16), each kept only where it agrees with float on >= 99% of labels
  (tests/distill/test_core_predict.py, bench/student.py).
- Loaded once per process: `load_predictor` caches by (folder, model_hash, quantize, device), so a
  worker loads a model for its first batch, not for every batch; a folder rewritten with new weights
  (a new model_hash) is loaded afresh.
- Cheap per pair: the fast tokenizer runs once per batch (in a background thread, so the next batch is
  tokenised while this one computes), under `torch.inference_mode`, with torch threads = the cores
  this process may use. On CPU `quantize="auto"` takes the fastest path that keeps >= 99% agreement
  (BENCHMARKS.md "Student throughput"): bf16 autocast where the CPU has bf16 instructions, else the
  float graph on ONNX Runtime; on CUDA it takes bf16 autocast, big batches, pinned host memory and one
  device-to-host copy per call.
- Two towers encode apart: a student without the joint pass ("interaction") encodes each distinct query
  of a call once and each batch's passages alone, so its cost per pair is one passage's encoding.

Execution paths (`quantize`): "none" (float32 torch), "int8" (torch dynamic int8 quantization of the
encoder's Linear layers; the small heads stay float), "onnx" (the float forward exported to ONNX and
run by ONNX Runtime), "onnx-int8" (that graph with int8 dynamic quantization of the encoder's MatMuls,
per channel), "bf16" (autocast: CUDA, or a CPU with AVX512-BF16/AMX) and "auto".
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distill.core.model import DimensionSpec, StudentModel, load_student, passage_text, read_manifest

QUANTIZE_CHOICES = ("auto", "none", "int8", "onnx", "onnx-int8", "bf16", "openvino")
DEVICE_CHOICES = ("auto", "cpu", "cuda")
# The CPU path "auto" picks: the fastest with >= 99% label agreement with float (BENCHMARKS.md) —
# bf16 autocast where the CPU computes bf16 natively (AVX512-BF16 or AMX: about twice float32's speed),
# else the float graph on ONNX Runtime. int8 was faster than float but flipped 2-10% of labels.
AUTO_CPU = "onnx"
AUTO_CPU_BF16 = "bf16"
# A two-tower student's encoder compiled by OpenVINO (bf16 where the CPU has it, two inference streams):
# 158 pairs/s end to end against torch bf16's 103 on 2 cores (BENCHMARKS.md).
AUTO_CPU_TWO_TOWER = "openvino"
# Pairs per forward pass. CPU: beyond ~32 the time per pair stops falling and length buckets get
# coarser. CUDA: big batches keep the GPU busy; pairs are length-sorted, so padding stays small.
CPU_BATCH_SIZE = 32
# OpenVINO with two streams: smaller batches keep both streams busy and pad less (batch 8 / 16 / 32:
# 151 / 154 / 143 pairs/s on 2 cores; BENCHMARKS.md, "Student throughput").
OPENVINO_BATCH_SIZE = 16
CUDA_BATCH_SIZE = 512
# Batches tokenised ahead of the one computing (a background thread; the fast tokenizer releases the GIL).
PREFETCH_BATCHES = 2


@dataclass(frozen=True)
class Pair:
    query: str
    title: str
    body: str


@dataclass(frozen=True)
class Prediction:
    labels: dict[str, int]  # decoded level values per dimension
    probabilities: dict[str, list[float]]  # per dimension, one per level in DimensionSpec.values order


def cpu_threads() -> int:
    """The cores this process may use (its CPU affinity), not the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 dot-product instructions; without them torch emulates bf16, slower than float."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_device(device: str) -> str:
    if device not in DEVICE_CHOICES:
        raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device")
    return device


def resolve_quantize(quantize: str, device: str, *, two_tower: bool = False) -> str:
    if quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZE_CHOICES)}, got {quantize!r}")
    if quantize == "auto":
        if device == "cuda":
            return "bf16"
        if two_tower and importlib.util.find_spec("openvino") is not None:
            return AUTO_CPU_TWO_TOWER
        if cpu_has_native_bf16():
            return AUTO_CPU_BF16
        # A host without the ml extra's onnxruntime still labels, on the exact float path.
        return AUTO_CPU if importlib.util.find_spec("onnxruntime") is not None else "none"
    if quantize == "openvino" and not two_tower:
        raise ValueError("quantize 'openvino' serves two-tower students (features 'interaction') only")
    if device == "cuda" and quantize in ("int8", "onnx", "onnx-int8", "openvino"):
        raise ValueError(f"quantize {quantize!r} is a CPU path; on CUDA use 'bf16' or 'none'")
    return quantize


# -- execution paths: features -> raw head outputs per dimension ----------------------------------------
Runner = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


class TorchRunner:
    def __init__(self, model: StudentModel, device: str, autocast_dtype: torch.dtype | None) -> None:
        self.model, self.device, self.autocast_dtype = model, device, autocast_dtype

    def __call__(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.device != "cpu":
            features = {k: v.to(self.device, non_blocking=True) for k, v in features.items()}
        with torch.inference_mode():
            if self.autocast_dtype is None:
                return self.model(**features)
            with torch.autocast(device_type=self.device, dtype=self.autocast_dtype):
                outputs = self.model(**features)
            return {k: v.float() for k, v in outputs.items()}


    def embed(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """One tower's pooled embeddings (float32) for tokenize_texts' output."""
        if self.device != "cpu":
            features = {k: v.to(self.device, non_blocking=True) for k, v in features.items()}
        with torch.inference_mode():
            if self.autocast_dtype is None:
                return self.model.embed(**features)
            with torch.autocast(device_type=self.device, dtype=self.autocast_dtype):
                return self.model.embed(**features).float()


class OnnxRunner:
    def __init__(self, session: Any, input_names: list[str], output_keys: list[str]) -> None:
        self.session, self.input_names, self.output_keys = session, input_names, output_keys

    def __call__(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        feeds = {name: features[name].numpy() for name in self.input_names}
        outputs = self.session.run(self.output_keys, feeds)
        return {key: torch.from_numpy(np.asarray(value)) for key, value in zip(self.output_keys, outputs, strict=True)}


class _TupleOutputs(torch.nn.Module):
    """The student's forward with positional inputs and a tuple of outputs, as ONNX export needs."""

    def __init__(self, model: StudentModel, input_names: list[str], output_keys: list[str]) -> None:
        super().__init__()
        self.model, self.input_names, self.output_keys = model, input_names, output_keys

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(**dict(zip(self.input_names, tensors, strict=True)))
        return tuple(outputs[key] for key in self.output_keys)


def _dynamic_axes(name: str) -> dict[int, str]:
    # Inputs tokenised together share their sequence length (ids and mask of one text kind). The distinct
    # queries of a batch are their own, smaller batch; `query_index` has one entry per pair.
    if name == "query_index":
        return {0: "batch"}
    if name.startswith("query_"):
        return {0: "query_batch", 1: "query_length"}
    return {0: "batch", 1: "passage_length" if name.startswith("passage_") else "pair_length"}


def onnx_runner(model: StudentModel, tokenizer: Any, *, int8: bool, threads: int) -> OnnxRunner:
    """Export the float forward to ONNX (in a private temporary folder, removed once loaded) and open it
    with ONNX Runtime; with int8, quantize the encoder's matrix products first (the heads stay float:
    their input mixes small pooled features with the scaled cosine, which one int8 scale would crush)."""
    import warnings

    import onnxruntime as ort

    # A repeated query, so the traced graph maps pairs to distinct queries as real batches do.
    sample = model.featurize(tokenizer, ["a short query", "another query here", "a short query"],
                             ["a passage of a few words", "a longer passage with some more words in it",
                              "a third passage"])
    input_names = list(sample)
    output_keys = [d.key for d in model.config.dimensions]
    dynamic_axes: dict[str, dict[int, str]] = {name: _dynamic_axes(name) for name in input_names}
    dynamic_axes.update({key: {0: "batch"} for key in output_keys})
    with tempfile.TemporaryDirectory(prefix="sage-student-onnx-") as folder:
        path = Path(folder) / "student.onnx"
        with warnings.catch_warnings(), torch.no_grad():  # tracing needs normal tensors, not inference ones
            warnings.simplefilter("ignore")
            torch.onnx.export(_TupleOutputs(model, input_names, output_keys).eval(),
                              tuple(sample[name] for name in input_names), str(path),
                              input_names=input_names, output_names=output_keys, dynamic_axes=dynamic_axes,
                              opset_version=17, dynamo=False)
        if int8:
            import onnx
            from onnxruntime.quantization import QuantType, quantize_dynamic

            heads = [node.name for node in onnx.load(str(path), load_external_data=False).graph.node
                     if "/heads/" in node.name]
            quantized = Path(folder) / "student.int8.onnx"
            # MatMul only: quantizing the embedding Gather too cost agreement and bought no speed
            # (BENCHMARKS.md, "Student throughput").
            quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8, per_channel=True,
                             nodes_to_exclude=heads, op_types_to_quantize=["MatMul"])
            path = quantized
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return OnnxRunner(session, input_names, output_keys)


class _PooledTower(torch.nn.Module):
    """One tower of the student (encoder + mean pooling), as OpenVINO converts it."""

    def __init__(self, model: StudentModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.embed(input_ids, attention_mask)


class OpenVinoRunner:
    """A two-tower student's encoder compiled by OpenVINO for the CPU; the heads stay in torch (float).

    `embed_many` keeps two inference requests in flight (one stream per core), so tokenising the next
    batch, running the heads and waiting overlap with the encoder's work."""

    STREAMS = 2

    def __init__(self, model: StudentModel, tokenizer: Any, *, threads: int) -> None:
        import openvino as ov

        sample = model.tokenize_texts(tokenizer, ["a short query", "a passage of a few more words"], query=False)
        with torch.no_grad():
            converted = ov.convert_model(
                _PooledTower(model).eval(), example_input=sample,
                input=[("input_ids", ov.PartialShape([-1, -1]), ov.Type.i64),
                       ("attention_mask", ov.PartialShape([-1, -1]), ov.Type.i64)])
        precision = "bf16" if cpu_has_native_bf16() else "f32"
        streams = max(1, min(self.STREAMS, threads))
        self.compiled = ov.Core().compile_model(converted, "CPU", {
            "INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "THROUGHPUT",
            "NUM_STREAMS": streams, "INFERENCE_NUM_THREADS": threads})
        self.streams = streams
        self.precision = precision
        self._ov = ov

    def embed_many(self, batches: Iterator[tuple[list[int], dict[str, torch.Tensor]]],
                   ) -> Iterator[tuple[list[int], torch.Tensor]]:
        """(indices, embeddings) per batch, in the batches' order, computed `streams` at a time."""
        queue = self._ov.AsyncInferQueue(self.compiled, self.streams)
        done: dict[int, torch.Tensor] = {}

        def finished(request: Any, number: int) -> None:
            done[number] = torch.from_numpy(np.array(request.get_output_tensor(0).data, dtype=np.float32))

        queue.set_callback(finished)
        pending: list[tuple[int, list[int]]] = []
        for number, (idx, features) in enumerate(batches):
            queue.start_async({"input_ids": features["input_ids"].numpy(),
                               "attention_mask": features["attention_mask"].numpy()}, number)
            pending.append((number, idx))
            while pending and pending[0][0] in done:  # hand back what is ready, in order
                first, first_idx = pending.pop(0)
                yield first_idx, done.pop(first)
        queue.wait_all()
        for number, idx in pending:
            yield idx, done.pop(number)

    def __call__(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise TypeError("the OpenVINO runner embeds towers (embed_many); Predictor calls it that way")


def int8_runner(model: StudentModel) -> TorchRunner:
    """torch dynamic int8 quantization of the encoder's Linear layers (weights int8, activations quantized
    per batch); the heads stay float for the same reason as in onnx_runner."""
    import warnings

    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        quantize_dynamic(model.encoder, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    return TorchRunner(model, "cpu", None)


# -- the predictor --------------------------------------------------------------------------------------
class Predictor:
    """A loaded student and one execution path. Thread-safe to call from one thread at a time."""

    def __init__(self, model: StudentModel, tokenizer: Any, manifest: dict, *, runner: Runner, device: str,
                 quantize: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.manifest = manifest
        self.model_hash: str = manifest["model_hash"]
        self.dimensions: list[DimensionSpec] = list(model.config.dimensions)
        self.runner = runner
        self.device = device
        self.quantize = quantize
        self.batch_size = (CUDA_BATCH_SIZE if device == "cuda"
                           else OPENVINO_BATCH_SIZE if quantize == "openvino" else CPU_BATCH_SIZE)
        # Length beyond what featurize keeps does not change the tokens, so it must not change the order.
        self._char_cap = model.config.max_length * 8
        self._lock = threading.Lock()

    def _batches(self, order: list[int], batch_size: int, featurize_batch: Callable[[list[int]], dict[str, torch.Tensor]],
                 ) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
        """(indices, features) per batch, tokenised PREFETCH_BATCHES ahead in a background thread."""
        pin = self.device == "cuda"

        def featurize(idx: list[int]) -> dict[str, torch.Tensor]:
            features = featurize_batch(idx)
            return {k: v.pin_memory() for k, v in features.items()} if pin else features

        chunks = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sage-featurize") as pool:
            pending: list[tuple[list[int], Future]] = []
            for idx in chunks:
                pending.append((idx, pool.submit(featurize, idx)))
                if len(pending) > PREFETCH_BATCHES:
                    head, future = pending.pop(0)
                    yield head, future.result()
            for head, future in pending:
                yield head, future.result()

    def _outputs(self, queries: list[str], passages: list[str], order: list[int],
                 batch_size: int) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
        """(indices, raw head outputs) per batch of `order`."""
        model, tokenizer, runner = self.model, self.tokenizer, self.runner
        if model.config.uses_joint or not isinstance(runner, (TorchRunner, OpenVinoRunner)):
            def featurize_pairs(idx: list[int]) -> dict[str, torch.Tensor]:
                return model.featurize(tokenizer, [queries[i] for i in idx], [passages[i] for i in idx])

            for idx, features in self._batches(order, batch_size, featurize_pairs):
                yield idx, runner(features)
            return
        # Two towers: a call's pairs share few queries (a judge run holds many results per query), so each
        # distinct query is encoded once per call, not once per batch, and a batch encodes passages only.
        distinct = list(dict.fromkeys(queries))
        row = {q: i for i, q in enumerate(distinct)}
        query_order = sorted(range(len(distinct)), key=lambda i: len(distinct[i]))
        def embedded(tower_order: list[int], texts: list[str], query: bool) -> Iterator[tuple[list[int], torch.Tensor]]:
            batches = self._batches(tower_order, batch_size,
                                    lambda idx: model.tokenize_texts(tokenizer, [texts[i] for i in idx], query=query))
            if isinstance(runner, OpenVinoRunner):
                yield from runner.embed_many(batches)
            else:
                for idx, features in batches:
                    yield idx, runner.embed(features)

        query_embeddings = torch.empty(0)
        for idx, vectors in embedded(query_order, distinct, True):
            if query_embeddings.numel() == 0:
                query_embeddings = vectors.new_empty((len(distinct), vectors.shape[1]))
            query_embeddings[torch.as_tensor(idx, device=vectors.device)] = vectors
        for idx, vectors in embedded(order, passages, False):
            rows = torch.as_tensor([row[queries[i]] for i in idx], device=query_embeddings.device)
            parts = {"query": query_embeddings.index_select(0, rows), "passage": vectors}
            yield idx, model.heads_forward(model.combine_parts(parts))

    def predict(self, pairs: Sequence[Pair], *, batch_size: int | None = None,
                progress: Callable[[int], None] | None = None) -> list[Prediction]:
        """One Prediction per pair, in the pairs' order. `progress(n)` is called after each batch with the
        number of pairs that batch finished (an increment, as tqdm.update takes it)."""
        if not pairs:
            return []
        size = int(batch_size or self.batch_size)
        if size < 1:
            raise ValueError("batch_size must be at least 1")
        queries = [p.query for p in pairs]
        passages = [passage_text(p.title, p.body) for p in pairs]
        cap = self._char_cap
        if self.model.config.uses_joint:  # the joint pass pads to the longest (query, passage) pair
            order = sorted(range(len(pairs)), key=lambda i: min(len(queries[i]), cap) + min(len(passages[i]), cap))
        else:  # only passages are padded per pair (the distinct queries are few and short)
            order = sorted(range(len(pairs)), key=lambda i: min(len(passages[i]), cap))
        keys = [d.key for d in self.dimensions]
        labels: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
        probabilities: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
        with self._lock, torch.inference_mode():
            for idx, outputs in self._outputs(queries, passages, order, size):
                batch_probabilities = self.model.probabilities(outputs)
                batch_labels = self.model.decode(outputs)
                for key in keys:
                    labels[key].append(batch_labels[key])
                    probabilities[key].append(batch_probabilities[key])
                if progress is not None:
                    progress(len(idx))
        # One device-to-host copy per dimension, then back to the input order.
        where = np.empty(len(order), dtype=np.int64)
        where[np.asarray(order)] = np.arange(len(order))
        label_rows = {k: torch.cat(labels[k]).cpu().numpy()[where].tolist() for k in keys}
        probability_rows = {k: torch.cat(probabilities[k]).float().cpu().numpy()[where].tolist() for k in keys}
        return [Prediction(labels={k: int(label_rows[k][i]) for k in keys},
                           probabilities={k: probability_rows[k][i] for k in keys})
                for i in range(len(pairs))]


def build_predictor(model_dir: str | Path, *, quantize: str = "auto", device: str = "auto",
                    threads: int | None = None) -> Predictor:
    """A fresh (uncached) predictor; most callers want load_predictor."""
    device = resolve_device(device)
    model, tokenizer, manifest = load_student(Path(model_dir), device=device)
    quantize = resolve_quantize(quantize, device, two_tower=not model.config.uses_joint)
    threads = threads or int(model.config.num_threads or 0) or cpu_threads()
    if device == "cpu":
        torch.set_num_threads(threads)
    runner: Runner
    if quantize == "int8":
        runner = int8_runner(model)
    elif quantize == "openvino":
        runner = OpenVinoRunner(model, tokenizer, threads=threads)
    elif quantize in ("onnx", "onnx-int8"):
        runner = onnx_runner(model, tokenizer, int8=quantize == "onnx-int8", threads=threads)
    else:
        runner = TorchRunner(model, device, torch.bfloat16 if quantize == "bf16" else None)
    return Predictor(model, tokenizer, manifest, runner=runner, device=device, quantize=quantize)


_cache: dict[tuple[str, str, str, str], Predictor] = {}
_cache_lock = threading.Lock()


def load_predictor(model_dir: str | Path, *, quantize: str = "auto", device: str = "auto") -> Predictor:
    """The predictor for a model folder, loaded once per process (keyed by folder + model_hash + path)."""
    folder = Path(model_dir).resolve()
    manifest = read_manifest(folder)
    resolved_device = resolve_device(device)
    # A student without the joint pass is two-tower (StudentConfig.uses_joint), which decides "auto" on CPU.
    two_tower = "joint" not in str((manifest.get("config") or {}).get("features", "joint"))
    key = (str(folder), str(manifest.get("model_hash")), resolve_quantize(quantize, resolved_device, two_tower=two_tower),
           resolved_device)
    with _cache_lock:
        predictor = _cache.get(key)
        if predictor is None:
            predictor = build_predictor(folder, quantize=key[2], device=resolved_device)
            # An older version of the same folder is not needed any more.
            for stale in [k for k in _cache if k[0] == key[0] and k[1] != key[1]]:
                del _cache[stale]
            _cache[key] = predictor
        return predictor


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


__all__ = ["Pair", "Prediction", "Predictor", "load_predictor", "build_predictor", "clear_cache", "AUTO_CPU",
           "QUANTIZE_CHOICES", "cpu_threads"]
