"""The `student` backend: a distilled cross-encoder (distill/) judging many items per forward pass.

It does not judge from a prompt: each request carries the item's texts (`JudgeRequest.item`), which
become a `distill.core.predict.Pair`. The predictor tokenises a batch once with the fast tokenizer,
buckets by length, pads dynamically and runs under `torch.inference_mode`; `load_predictor` caches
it per process, so a worker loads the model once, not once per chunk.

Guarantees the judges app relies on:

- the model that answered is the model the judge version names: the predictor's `model_hash` must
  equal the hash pinned on the version's student, or every item is refused (`model_changed`), so no
  label is ever attributed to weights that did not make it; each outcome carries the hash
  (`extra["model_hash"]`), which the judgment stores;
- a label outside the rubric is an error outcome (`out_of_scale` / `missing_field`), never clipped;
- the forward pass runs in a worker thread (`asyncio.to_thread`), so the engine's event loop stays
  free to report outcomes and notice a cancel while the model computes.

torch is imported only when a batch is judged: importing this module (or the judges app) does not.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from .backends import Acquire, JudgeBackend, PermanentError, error_outcome
from .types import JudgeConfig, JudgeOutcome, JudgeRequest


class StudentBackend(JudgeBackend):
    name: ClassVar[str] = "student"

    def __init__(self, *, model_dir: str | Path, model_hash: str, quantize: str = "auto", device: str = "auto") -> None:
        self.model_dir = Path(model_dir)
        self.model_hash = model_hash
        self.quantize = quantize
        self.device = device

    def _predictor(self) -> Any:
        from distill.core.model import read_manifest
        from distill.core.predict import load_predictor

        if not self.model_dir.is_dir():
            raise PermanentError(f"The student model folder {self.model_dir} is missing on this worker; a worker that "
                                 "takes the student queue needs SAGE_DATA_DIR's model files.", kind="model_missing")
        try:
            pinned_here = read_manifest(self.model_dir).get("model_hash")
        except ValueError as exc:
            raise PermanentError(str(exc), kind="model_missing") from None
        if pinned_here != self.model_hash:
            raise PermanentError(f"The model folder {self.model_dir.name} holds model {str(pinned_here)[:12]}…, not the "
                                 f"{self.model_hash[:12]}… the judge version pins (the folder was replaced after "
                                 "training). Nothing was labelled with it.", kind="model_changed")
        try:
            # Loading checks every file's hash against the manifest.
            predictor = load_predictor(self.model_dir, quantize=self.quantize, device=self.device)
        except ValueError as exc:
            raise PermanentError(f"The student model cannot be used: {exc}. Nothing was labelled with it.",
                                 kind="model_changed") from None
        return predictor

    def _judge_now(self, requests: Sequence[JudgeRequest]) -> list[JudgeOutcome]:
        from distill.core.predict import Pair

        missing = [r.item_id for r in requests if r.item is None]
        if missing:
            raise ValueError(f"student requests need the item's texts (JudgeRequest.item); none for items {missing}")
        predictor = self._predictor()
        started = time.perf_counter()
        predictions = predictor.predict([Pair(query=r.item.query, title=r.item.title, body=r.item.body)
                                         for r in requests if r.item is not None])
        # Each item's share of the batch's time: summed over a run they give the seconds the model
        # computed, which the hardware cost per 1k judgments is measured from.
        share_ms = (time.perf_counter() - started) * 1000 / max(1, len(requests))
        outcomes = []
        for request, prediction in zip(requests, predictions, strict=True):
            labels = {key: int(value) for key, value in prediction.labels.items()}
            raw = json.dumps({"labels": labels, "probabilities": prediction.probabilities}, sort_keys=True)
            extra = {"model_hash": predictor.model_hash}
            problems = request.rubric.validate_labels(labels)
            if problems:
                kind = "out_of_scale" if any("outside the scale" in p or "unknown dimension" in p for p in problems) \
                    else "missing_field"
                outcome = error_outcome(request, kind=kind, prompt="", latency_ms=share_ms, raw_response=raw,
                                        message="The student's labels do not fit the rubric: " + "; ".join(problems))
                outcomes.append(replace(outcome, extra=extra))
                continue
            outcomes.append(JudgeOutcome(item_id=request.item_id, labels=labels, rationale="", raw_response=raw,
                                         prompt="", tokens_in=0, tokens_out=0, latency_ms=share_ms, attempts=1,
                                         error_kind=None, error_message="", extra=extra))
        return outcomes

    async def judge_batch(self, requests: Sequence[JudgeRequest], config: JudgeConfig, *,
                          acquire: Acquire | None = None) -> list[JudgeOutcome]:
        return await asyncio.to_thread(self._judge_now, requests)

    async def judge(self, request: JudgeRequest, config: JudgeConfig, *, acquire: Acquire | None = None) -> JudgeOutcome:
        return (await self.judge_batch([request], config, acquire=acquire))[0]
