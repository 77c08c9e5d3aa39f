"""A review queue's labels download as JSONL and spreadsheet-safe CSV (page link, command, token)."""

import csv
import io
import json

import pytest
from django.core.management import call_command

from review.services import assignment_next, human_label_correct, human_label_submit
from sage.services import api_token_create
from tests.factories import UserFactory, review_queue

pytestmark = pytest.mark.django_db


@pytest.fixture
def labelled_queue():
    rita = UserFactory(username="rita", roles=["reviewer"])
    queue = review_queue(reviewers=[rita], overlap=1, queries=1, depth=2)
    for value, rationale in ((3, "=cmd|' /C calc'!A0"), (1, "plain")):
        assignment = assignment_next(queue=queue, reviewer=rita)
        label = human_label_submit(assignment=assignment, labels={"relevance": value}, rationale=rationale,
                                   time_spent_ms=1200, user=rita)
    human_label_correct(label=label, labels={"relevance": 0}, rationale="off topic", user=rita, reason="second look")
    return queue


def test_the_queue_page_links_its_labels_as_csv_and_jsonl(client, labelled_queue):
    client.force_login(labelled_queue.reviewers.get())
    html = client.get(f"/review/queues/{labelled_queue.pk}/").content.decode()
    for fmt in ("jsonl", "csv"):
        assert f"/review/queues/{labelled_queue.pk}/labels/export/?format={fmt}" in html
    rows = [json.loads(line) for line in
            b"".join(client.get(f"/review/queues/{labelled_queue.pk}/labels/export/?format=jsonl").streaming_content)
            .decode().splitlines()]
    assert sorted((r["labels"]["relevance"], r["source"], r["revision"]) for r in rows) == [
        (0, "correction", 2), (3, "review", 1)]
    assert all(r["reviewer"] == "rita" and r["query"] and r["doc_id"] for r in rows)


def test_the_csv_is_safe_to_open_and_history_keeps_every_revision(client, labelled_queue):
    client.force_login(labelled_queue.reviewers.get())
    url = f"/review/queues/{labelled_queue.pk}/labels/export/?format=csv"
    latest = list(csv.DictReader(io.StringIO(b"".join(client.get(url).streaming_content).decode())))
    assert {r["rationale"] for r in latest} == {"'=cmd|' /C calc'!A0", "off topic"}
    assert {r["label_relevance"] for r in latest} == {"3", "0"}
    history = list(csv.DictReader(io.StringIO(b"".join(client.get(url + "&history=1").streaming_content).decode())))
    assert len(history) == 3 and {r["is_latest"] for r in history} == {"True", "False"}


def test_the_command_and_a_token_get_the_same_file(client, labelled_queue):
    out = io.StringIO()
    call_command("export_labels", "--queue", str(labelled_queue.pk), "--format", "csv", stdout=out)
    analyst = UserFactory(username="export-analyst", roles=["analyst"])
    _, key = api_token_create(user=analyst, name="export")
    response = client.get(f"/review/queues/{labelled_queue.pk}/labels/export/?format=csv",
                          headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    assert b"".join(response.streaming_content).decode() == out.getvalue()
    assert client.get("/review/queues/999999/labels/export/", headers={"Authorization": f"Bearer {key}"}).status_code == 404
