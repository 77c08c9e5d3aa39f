"""A review queue's labels as a file: JSONL or spreadsheet-safe CSV (`sage.csvsafe`).

One row per reviewer and item: the latest revision (or, with `history`, every revision), with
who wrote it and how (`source`: labelled in the queue, corrected in triage). The JSONL rows carry
`query` and `doc_id`, so another SAGE imports them with the label importer — under an external
assessor's name, never as the reviewer (`human_label_import`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sage.csvsafe import labelled_rows_export

from .models import HumanLabel, ReviewQueue


def queue_labels_export(queue: ReviewQueue, fmt: str, *, history: bool = False) -> Iterator[str]:
    keys = queue.policy_version.parsed_rubric().keys
    labels = HumanLabel.objects.filter(queue=queue)
    if not history:
        labels = labels.filter(is_latest=True)
    labels = (labels.select_related("item__query", "item__document", "reviewer", "created_by", "policy_version")
              .order_by("item__query__external_id", "item_id", "reviewer__username", "revision")
              .iterator(chunk_size=2000))

    def row(label: HumanLabel) -> dict[str, Any]:
        return {"reviewer": label.reviewer.username, "query_id": label.item.query.external_id,
                "query": label.item.query.text, "doc_id": label.item.document.external_id, "item": label.item.hash,
                "labels": label.labels, "rationale": label.rationale, "source": label.source,
                "revision": label.revision, "is_latest": label.is_latest,
                "policy_version": str(label.policy_version), "rubric_hash": label.rubric_hash,
                "written_by": label.created_by.username if label.created_by else "", "reason": label.reason,
                "time_spent_ms": label.time_spent_ms, "created_at": label.created_at.isoformat(), "queue": queue.pk}

    header = ["reviewer", "query_id", "query", "doc_id", "item", *(f"label_{k}" for k in keys), "rationale", "source",
              "revision", "is_latest", "policy_version", "rubric_hash", "written_by", "reason", "time_spent_ms",
              "created_at", "queue"]
    yield from labelled_rows_export((row(label) for label in labels), fmt, header=header, label_keys=keys)
