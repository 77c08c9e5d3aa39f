"""The k most similar accepted precedents for an item: what the judge prompt shows as examples.

Similarity is cosine over MiniLM embeddings (cached per precedent, recomputed only when its text
changes). Without the `ml` extra, TF-IDF cosine (scikit-learn) stands in, with a logged notice.
Ties break on precedent id, so the same inputs always select the same precedents in the same order.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np

from policy.models import Policy
from sage import embeddings

from .models import Precedent, PrecedentEmbedding, PrecedentSet

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SelectionQuery:
    query: str
    text: str

    def as_text(self) -> str:
        return f"{self.query}\n{self.text}"


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _cached_vectors(precedents: list[Precedent]) -> np.ndarray:
    cached = {
        e.precedent_id: e for e in PrecedentEmbedding.objects.filter(
            precedent__in=precedents, model_name=embeddings.MODEL_NAME
        )
    }
    stale = [p for p in precedents
             if p.pk not in cached or cached[p.pk].text_hash != _text_hash(p.embedding_text())]
    if stale:
        vectors = embeddings.encode([p.embedding_text() for p in stale])
        for p, vector in zip(stale, vectors):
            row, _ = PrecedentEmbedding.objects.update_or_create(
                precedent=p, model_name=embeddings.MODEL_NAME,
                defaults={"text_hash": _text_hash(p.embedding_text()), "vector": vector.astype(np.float32).tobytes()},
            )
            cached[p.pk] = row
    return np.stack([np.frombuffer(bytes(cached[p.pk].vector), dtype=np.float32) for p in precedents])


def _lexical_scores(precedents: list[Precedent], queries: list[SelectionQuery]) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(sublinear_tf=True)
    matrix = vectorizer.fit_transform([p.embedding_text() for p in precedents] + [q.as_text() for q in queries])
    left, right = matrix[: len(precedents)], matrix[len(precedents):]
    return (right @ left.T).toarray()


def similarity_scores(precedents: list[Precedent], queries: list[SelectionQuery]) -> tuple[np.ndarray, str]:
    """(scores[query, precedent], method)."""
    try:
        vectors = _cached_vectors(precedents)
        query_vectors = embeddings.encode([q.as_text() for q in queries])
        return query_vectors @ vectors.T, "embedding"
    except embeddings.EncoderUnavailable as exc:
        logger.warning("Precedent selection falls back to TF-IDF: %s. Install the ml extra for embeddings.", exc)
        return _lexical_scores(precedents, queries), "lexical"


def precedents_select_many(*, policy: Policy, queries: list[SelectionQuery], k: int,
                           precedent_set: PrecedentSet | None = None) -> list[list[Precedent]]:
    """For each query, up to k accepted precedents, most similar first.

    With `precedent_set`, only its members are candidates, so a judge run keeps selecting from the
    snapshot it recorded even while curators accept or retire precedents.
    """
    if k <= 0 or not queries:
        return [[] for _ in queries]
    candidates = Precedent.objects.filter(policy=policy)
    if precedent_set is not None:
        candidates = candidates.filter(pk__in=[member[0] for member in precedent_set.members])
    else:
        candidates = candidates.filter(status=Precedent.Status.ACCEPTED)
    precedents = list(candidates.order_by("id"))
    if not precedents:
        return [[] for _ in queries]
    scores, _ = similarity_scores(precedents, queries)
    ids = np.array([p.pk for p in precedents])
    selected = []
    for row in scores:
        # lexsort sorts by the last key first: score descending, then id ascending for ties.
        order = np.lexsort((ids, -np.round(row, 6)))[:k]
        selected.append([precedents[i] for i in order])
    return selected


def precedents_select(*, policy: Policy, query: str, text: str, k: int) -> list[Precedent]:
    return precedents_select_many(policy=policy, queries=[SelectionQuery(query, text)], k=k)[0]
