"""/readyz (database and broker reachable, 503 naming what failed) and `manage.py sage_status`
(queue depths, workers answering a ping, stalled runs)."""

from __future__ import annotations

import io
import json
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from kombu import Connection, Exchange, Queue

from distill.models import StudentModel
from distill.services import TeacherSource, training_set_build
from judges.models import JudgeRun
from tests.distill.app_helpers import relevant, teacher_run, world

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]  # the filesystem broker takes paths of its own


def test_readyz_is_public_and_ready_when_database_and_broker_answer(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_names_a_redis_broker_on_a_closed_port_and_nothing_about_it(client, settings):
    settings.CELERY_BROKER_URL = "redis://:s3cret@127.0.0.1:1/0"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "checks": {"database": "ok", "broker": "failed"},
                               "failed": ["broker"]}
    assert b"127.0.0.1" not in response.content and b"s3cret" not in response.content


def test_readyz_fails_when_a_filesystem_broker_folder_is_missing(client, settings, tmp_path):
    settings.CELERY_BROKER_URL = "filesystem://"
    folder = str(tmp_path)
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(tmp_path / "gone"), "data_folder_out": folder,
                                                "processed_folder": folder, "control_folder": folder}
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["broker"]
    assert str(tmp_path).encode() not in response.content


def test_readyz_names_the_database_when_it_does_not_answer(client, monkeypatch):
    from django.db import OperationalError

    from sage import operations

    class DownDatabase:
        def cursor(self):
            raise OperationalError("could not connect to server: db.internal:5432")

    monkeypatch.setattr(operations, "db_connection", DownDatabase())
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["database"]
    assert b"db.internal" not in response.content


def _status(*args: str) -> str:
    out = io.StringIO()
    call_command("sage_status", "--timeout", "0.2", *args, stdout=out)
    return out.getvalue()


def test_sage_status_prints_queues_workers_and_stalled_runs(settings):
    text = _status()
    lines = text.splitlines()
    assert lines[0].startswith("Broker (") and lines[0].endswith("reachable")
    assert lines[1] == "Queues (messages waiting):"
    for queue in settings.CELERY_TASK_QUEUES:
        assert any(line.startswith(f"  {queue.name}: ") for line in lines), text
    assert "Workers answering a ping: " in text  # none is a valid answer; a test session may run one
    assert lines[-1] == "Stalled runs: none"


def test_sage_status_json_has_a_depth_for_every_queue(settings):
    status = json.loads(_status("--json"))
    assert set(status) == {"broker_transport", "broker_reachable", "queue_depths", "workers", "stalled"}
    assert status["broker_reachable"] is True
    assert set(status["queue_depths"]) == {queue.name for queue in settings.CELERY_TASK_QUEUES}
    assert all(isinstance(depth, int) for depth in status["queue_depths"].values())
    assert isinstance(status["workers"], list) and status["stalled"] == []


def test_sage_status_counts_the_messages_waiting_in_a_queue(settings):
    """Two messages on a queue no worker consumes, through the configured broker (Redis or files)."""
    name = f"status-test-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, Exchange(name), routing_key=name)
    settings.CELERY_TASK_QUEUES = (queue,)
    with Connection(settings.CELERY_BROKER_URL, transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS) as broker:
        producer = broker.Producer()
        for n in range(2):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key=name, declare=[queue])
        try:
            assert json.loads(_status("--json"))["queue_depths"] == {name: 2}
            assert f"  {name}: 2" in _status()
        finally:
            queue(broker.default_channel).purge()


def test_sage_status_unreachable_broker_is_said_and_exits_zero(settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    text = _status()
    assert text.startswith("Broker (redis): UNREACHABLE")
    assert "  sage: not measurable" in text and "Workers: not known" in text


def test_sage_status_lists_running_runs_whose_heartbeat_is_too_old(settings):
    settings.SAGE_JUDGE_STALL_S = 600
    settings.SAGE_DISTILL_STALL_S = 900
    w = world(queries=6)
    run = teacher_run(w, "teacher", relevant)
    training_set = training_set_build(name="status", policy_version=w.version, teachers=[TeacherSource(run)],
                                      user=w.analyst)
    now = timezone.now()
    JudgeRun.objects.filter(pk=run.pk).update(status=JudgeRun.Status.RUNNING, heartbeat_at=now - timedelta(seconds=700))
    stalled = StudentModel.objects.create(name="stuck", training_set=training_set, status=StudentModel.Status.RUNNING,
                                          heartbeat_at=now - timedelta(seconds=1000))
    # Not stalled: a training with a recent heartbeat, and a queued one (only RUNNING counts here).
    StudentModel.objects.create(name="busy", training_set=training_set, status=StudentModel.Status.RUNNING,
                                heartbeat_at=now - timedelta(seconds=60))
    StudentModel.objects.create(name="waiting", training_set=training_set, status=StudentModel.Status.QUEUED,
                                heartbeat_at=now - timedelta(seconds=5000))

    listed = json.loads(_status("--json"))["stalled"]
    assert [(s["kind"], s["pk"], s["stall_s"]) for s in listed] == [
        ("judge run", run.pk, 600), ("student training", stalled.pk, 900)]
    assert listed[0]["quiet_s"] >= 700 and listed[1]["name"] == "stuck"
    text = _status()
    assert "Stalled runs: 2" in text
    assert f"  judge run {run.pk} (teacher v1 on all): no heartbeat for " in text
    assert f"  student training {stalled.pk} (stuck): no heartbeat for " in text
