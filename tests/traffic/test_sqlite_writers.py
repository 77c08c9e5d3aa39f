"""On the embedded default, overlapping imports queue instead of failing, and a write that still
finds SQLite locked answers 503 with Retry-After, never 500 (issue 12).

SQLite's busy timeout is cut to a fraction of a second here, so that the overlap a test can afford
(a few thousand rows per file) is longer than the timeout, as eight 200k-row uploads are in real use.
"""

from __future__ import annotations

import sqlite3
import threading

import pytest
from django.db import connection, connections
from django.test import Client

from tests.factories import UserFactory, jsonl_bytes, traffic_row, traffic_surface
from tests.markers import sqlite_only
from traffic import staging
from traffic.models import Item, ResultEntry, TrafficImport

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded, sqlite_only]


@pytest.fixture
def short_busy_timeout():
    options = connection.settings_dict["OPTIONS"]
    before = options["timeout"]
    options["timeout"] = 0.3  # read by every connection opened from now on (each thread's)
    connection.close()
    yield
    options["timeout"] = before
    connection.close()


def traffic_file(n: int, rows: int) -> bytes:
    return jsonl_bytes([traffic_row(query=f"file {n} query {i // 20}", rank=i % 20 + 1, doc_id=f"f{n}-d{i}",
                                    body=f"passage {i} of file {n} " * 8) for i in range(rows)])


def post_import(client: Client, surface, data: bytes, name: str):
    return client.post(f"/traffic/api/imports/?surface={surface.slug}&format=jsonl&filename={name}", data=data,
                       content_type="application/octet-stream")


def test_overlapping_imports_take_turns_and_all_succeed(short_busy_timeout):
    surface = traffic_surface()
    analyst = UserFactory(username="sqlite-analyst", roles=["analyst"])
    files = [traffic_file(n, 2_000) for n in range(6)]
    barrier, statuses, failures = threading.Barrier(len(files)), {}, []

    def upload(n: int) -> None:
        try:
            client = Client(raise_request_exception=False)
            client.force_login(analyst)
            barrier.wait(timeout=30)
            response = post_import(client, surface, files[n], f"{n}.jsonl")
            statuses[n] = response.status_code
            if response.status_code != 201:
                failures.append(response.content[:300])
        finally:
            connections.close_all()

    threads = [threading.Thread(target=upload, args=(n,)) for n in range(len(files))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert sorted(statuses.values()) == [201] * len(files), failures
    assert TrafficImport.objects.count() == len(files) and ResultEntry.objects.count() == 6 * 2_000
    # Entries and items first: the flush after this test would delete documents first, each one's
    # foreign-key check scanning the items (which have no index by document, traffic/0005).
    ResultEntry.objects.all()._raw_delete(ResultEntry.objects.db)
    Item.objects.all()._raw_delete(Item.objects.db)


def test_an_import_that_never_gets_its_turn_answers_503_with_retry_after(settings):
    settings.TRAFFIC_IMPORT_WAIT_SECONDS = 0.5
    surface = traffic_surface()
    client = Client(raise_request_exception=False)
    client.force_login(UserFactory(username="waiting-analyst", roles=["analyst"]))
    with staging.writer_turn(wait=5):  # another import is moving its rows
        api = post_import(client, surface, traffic_file(1, 10), "1.jsonl")
        page = client.post("/traffic/imports/", {"surface": surface.pk, "file": _upload(traffic_file(2, 10))})
    assert api.status_code == 503 and int(api["Retry-After"]) > 0
    assert api.json()["error"] == "busy" and "nothing was imported" in api.json()["message"]
    assert page.status_code == 503 and int(page["Retry-After"]) > 0
    assert b"nothing was imported" in page.content
    assert not TrafficImport.objects.exists()
    assert post_import(client, surface, traffic_file(1, 10), "1.jsonl").status_code == 201  # its turn came


def test_a_write_that_finds_the_database_locked_answers_503_not_500(short_busy_timeout):
    surface = traffic_surface()
    client = Client(raise_request_exception=False)
    client.force_login(UserFactory(username="locked-analyst", roles=["analyst"]))
    holder = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # a long writer elsewhere (another process's import, a worker)
    try:
        response = client.post("/traffic/variants/", {"surface": surface.pk, "name": "ramped", "role": "treatment",
                                                      "ramp_percent": "5", "description": ""})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert response.status_code == 503 and int(response["Retry-After"]) > 0


def _upload(data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("t.jsonl", data, content_type="application/octet-stream")
