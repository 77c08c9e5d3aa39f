"""The demo's human labels: NIST's labels under the external assessor "nist-assessor", and a queue for the demo users."""

from __future__ import annotations

import io
import json

from django.conf import settings
from django.contrib.auth import get_user_model

from policy.models import Policy
from traffic.demo import CALIBRATION_SAMPLE
from traffic.models import Item, Sample
from traffic.rows import query_hash

from .models import ReviewQueue
from .services import human_label_import, review_queue_create

NIST_USERNAME = "nist-assessor"
DEMO_QUEUE = "Demo calibration queue"


def _nist_lines() -> list[bytes]:
    """NIST's labels for the pairs present in the demo traffic (the rankers' top-20s)."""
    known = set(Item.objects.values_list("query__text_hash", "document__external_id"))
    lines = []
    with (settings.SAGE_DEMO_DIR / "trec-dl-2023" / "judgments.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if (query_hash(row["query"]), row["doc_id"]) in known:
                lines.append(json.dumps({"assessor": NIST_USERNAME, "query": row["query"], "doc_id": row["doc_id"],
                                         "labels": {"relevance": row["label"]}}).encode() + b"\n")
    return lines


def demo_labels_load() -> list[str]:
    User = get_user_model()
    nist, created = User.objects.get_or_create(username=NIST_USERNAME,
                                               defaults={"first_name": "NIST", "last_name": "assessor"})
    if created:
        nist.set_unusable_password()  # labels only; nobody logs in as NIST
        nist.save(update_fields=["password"])
    policy = Policy.objects.get(surface__slug="web-passages", slug="relevance")
    v1 = policy.versions.get(number=1)
    analyst = User.objects.get(username="demo-analyst")
    stats = human_label_import(source=io.BytesIO(b"".join(_nist_lines())), policy_version=v1, user=analyst)
    lines = [f"NIST assessor labels under v1: {stats['created']} new, {stats['unchanged']} unchanged"]
    if not ReviewQueue.objects.filter(name=DEMO_QUEUE).exists():
        sample = Sample.objects.get(name=CALIBRATION_SAMPLE, surface=policy.surface)
        queue = review_queue_create(
            name=DEMO_QUEUE, sample=sample, policy_version=policy.latest_published(),
            reviewers=User.objects.filter(username__in=["demo-reviewer", "demo-admin"]), overlap=2,
            instructions="Label each passage on every dimension of the policy; write a rationale when unsure.",
            user=analyst,
        )
        lines.append(f"review queue {queue.name!r} ({sample.item_count} items, overlap 2, demo-reviewer + demo-admin)")
    return lines
