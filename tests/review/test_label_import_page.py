"""Review → Import labels: a dry run first, external assessors named, a reviewer's name refused."""

import io
import json

import pytest

from review.models import HumanLabel
from tests.factories import UserFactory, review_queue

pytestmark = pytest.mark.django_db


def _upload(rows) -> io.BytesIO:
    upload = io.BytesIO(b"".join(json.dumps(r).encode() + b"\n" for r in rows))
    upload.name = "labels.jsonl"
    return upload


def test_a_dry_run_names_the_new_assessor_and_writes_nothing(client):
    rita = UserFactory(username="rita", roles=["reviewer"])
    queue = review_queue(reviewers=[rita], overlap=1)
    analyst = UserFactory(username="queue-analyst", roles=["analyst"])
    item = queue.sample.sample_items.first().item
    client.force_login(analyst)
    form = {"policy_version": queue.policy_version_id, "dry_run": "on"}
    response = client.post("/review/labels/import/", {**form, "file": _upload([{"item": item.hash, "label": 2}]),
                                                      "default_assessor": "vendor-x"})
    html = response.content.decode()
    assert response.status_code == 200 and "Dry run, nothing imported" in html and "vendor-x" in html
    assert not HumanLabel.objects.exists()
    response = client.post("/review/labels/import/", {**form, "file": _upload([{"reviewer": "rita", "item": item.hash,
                                                                                "label": 2}])})
    assert response.status_code == 400 and "is a SAGE user" in response.content.decode()
    response = client.post("/review/labels/import/", {"policy_version": queue.policy_version_id,
                                                      "file": _upload([{"assessor": "vendor-x", "item": item.hash,
                                                                        "label": 2}])})
    assert response.status_code == 302
    assert HumanLabel.objects.get().reviewer.username == "vendor-x"
