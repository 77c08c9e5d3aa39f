"""A task goes through the real broker to a real worker process and its answer lands in the database."""

import pytest

from sage.models import WorkerPing
from sage.services import worker_ping_answer, worker_ping_request
from tests.conftest import wait_for


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_answers_a_ping_through_redis(celery_worker_process):
    ping = worker_ping_request()

    answered = wait_for(lambda: WorkerPing.objects.filter(pk=ping.pk, answered_at__isnull=False).first(),
                        timeout=30, message="the worker to answer the ping")

    assert answered.worker_hostname
    assert answered.round_trip_ms >= 0
    assert "worker_ping_answer_task" in celery_worker_process.log


@pytest.mark.django_db
def test_a_redelivered_answer_changes_nothing(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        ping = worker_ping_request()
    assert worker_ping_answer(ping_id=ping.pk, hostname="first") is True
    assert worker_ping_answer(ping_id=ping.pk, hostname="second") is False
    ping.refresh_from_db()
    assert ping.worker_hostname == "first"


@pytest.mark.django_db
def test_the_task_is_queued_only_after_commit(django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr("sage.tasks.worker_ping_answer_task.delay", lambda pk: sent.append(pk))
    with django_capture_on_commit_callbacks(execute=True):
        ping = worker_ping_request()
        assert sent == []
    assert sent == [ping.pk]


def test_a_worker_process_freezes_its_startup_objects():
    """A set-up worker moves its startup objects out of the collector's reach (sage.celery), so a
    full collection does not walk them mid-chunk; both worker signals do it."""
    import gc

    from celery.signals import worker_process_init, worker_ready

    for signal in (worker_process_init, worker_ready):
        gc.unfreeze()
        assert gc.get_freeze_count() == 0
        signal.send(sender=None)
        try:
            assert gc.get_freeze_count() > 10_000
        finally:
            gc.unfreeze()
