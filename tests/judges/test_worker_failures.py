"""Failures through Redis and real Celery worker processes: a task that raises fails its run, and the
stall sweep that Celery beat schedules resumes a run whose tasks were lost."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from judges.models import JudgeRun, Judgment
from judges.services import judge_run_start, judge_runs_sweep
from tests.conftest import WorkerProcess, database_url_for, wait_for
from tests.judges.helpers import judge_setup, start_and_lose, web_only_endpoint

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_chunk_task_that_raises_fails_the_run_with_its_reason(celery_worker_process, fault_endpoint, settings):
    web_only_endpoint(settings, fault_endpoint)
    version, sample, analyst = judge_setup(queries=1, depth=3, endpoint="web-only")
    run = judge_run_start(version=version, sample=sample, user=analyst)
    ended = wait_for(lambda: JudgeRun.objects.filter(pk=run.pk).exclude(status__in=JudgeRun.ACTIVE).first(),
                     timeout=60, message="the run to end")
    assert ended.status == "failed", ended.message + celery_worker_process.log[-3000:]
    assert ended.message.startswith("A worker task failed while judging a chunk of items: JudgeError: Endpoint")
    assert "JudgeError: Endpoint 'web-only' is not configured on this worker (it knows: fault, local)" in ended.message
    assert ended.finished_at is not None and not Judgment.objects.filter(run=run).exists()


def test_the_sweep_resumes_a_stalled_run_and_a_real_worker_finishes_it(celery_worker_process, fault_endpoint):
    version, sample, analyst = judge_setup(queries=1, depth=4)
    run = start_and_lose(version, sample, analyst)
    JudgeRun.objects.filter(pk=run.pk).update(status="running", started_at=timezone.now(),
                                               heartbeat_at=timezone.now() - timedelta(hours=1))
    assert judge_runs_sweep(stall_s=600, check_backlog=False).resumed == [run.pk]
    finished = wait_for(lambda: JudgeRun.objects.filter(pk=run.pk, status="succeeded").first(), timeout=60,
                        message="the resumed run to finish")
    assert finished.done_items == 4 and finished.stall_resumes == 1


@pytest.fixture
def beat_worker(django_db_setup, fault_server, tmp_path, settings):
    """A worker with embedded beat (as `./run demo` starts it) sweeping every second, on a queue of its
    own so that the session's worker cannot take its sweeps."""
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.skip("needs CELERY_BROKER_URL=redis://… (./run test starts a throwaway Redis)")
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": database_url_for(connections["default"].settings_dict),
        "SAGE_ENDPOINTS": "local,fault", "SAGE_ENDPOINT_FAULT_BASE_URL": fault_server.base_url,
        "SAGE_ENDPOINT_FAULT_API_KEY": "test", "SAGE_ENDPOINT_FAULT_JSON_MODE": "json_schema",
        "CELERY_TASK_DEFAULT_QUEUE": "sage-beat-test", "SAGE_JUDGE_SWEEP_S": "1", "SAGE_JUDGE_STALL_S": "3",
    })
    worker = WorkerProcess(env, name="beat", extra_args=["--beat", "-s", str(tmp_path / "celerybeat-schedule")])
    worker.wait_ready()
    yield worker
    worker.stop()


def test_celery_beat_in_the_worker_sweeps_stalled_runs(beat_worker, fault_endpoint):
    version, sample, analyst = judge_setup(queries=1, depth=3)
    run = start_and_lose(version, sample, analyst)
    JudgeRun.objects.filter(pk=run.pk).update(status="running", started_at=timezone.now(),
                                               heartbeat_at=timezone.now() - timedelta(minutes=5))
    finished = wait_for(lambda: JudgeRun.objects.filter(pk=run.pk, status="succeeded").first(), timeout=60,
                        message="beat's sweep to resume the run and the worker to finish it")
    assert finished.done_items == 3 and finished.stall_resumes == 1, beat_worker.log[-3000:]
    assert "judges.tasks.judge_runs_sweep_task" in beat_worker.log
    assert f"Stalled runs: resumed #{run.pk}." in beat_worker.log
