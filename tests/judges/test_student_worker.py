"""A student judge run end to end through Redis and a real Celery worker that consumes only the
`student` queue, as a GPU host would (`celery -A sage worker -Q student`)."""

from __future__ import annotations

import os
import shutil

import pytest

from judges.models import JudgeRun, Judgment
from judges.services import judge_run_start
from tests.conftest import WorkerProcess, database_url_for, wait_for
from tests.judges.student_helpers import promote, student_judge, student_world


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_on_the_student_queue_alone_runs_a_student_judge(tiny_model, settings):
    from django.db import connections

    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.skip("needs CELERY_BROKER_URL=redis://… (./run test starts a throwaway Redis)")
    settings.SAGE_JUDGE_CHUNK_SIZE = 10  # this process fans out chunks of 10; the worker judges them
    sw = student_world(*tiny_model, queries=8, depth=3)
    promote(sw)
    version = student_judge(sw)
    env = {**os.environ, "DATABASE_URL": database_url_for(connections["default"].settings_dict)}
    # Only the student queue: were the run's tasks routed anywhere else, this worker would never see them.
    worker = WorkerProcess(env, name="student-gpu", extra_args=["-Q", settings.SAGE_STUDENT_QUEUE, "--concurrency=1"])
    try:
        worker.wait_ready()
        run = judge_run_start(version=version, sample=sw.sample, user=sw.analyst)
        finished = wait_for(lambda: JudgeRun.objects.filter(pk=run.pk).exclude(status__in=JudgeRun.ACTIVE).first(),
                            timeout=300, interval=0.5, message="the student worker to finish the run")
        assert finished.status == "succeeded", finished.message + worker.log[-3000:]
        judgments = Judgment.objects.filter(run=run)
        assert judgments.count() == sw.sample.item_count == finished.done_items
        assert set(judgments.values_list("model_hash", flat=True)) == {sw.student.model_hash}
        assert "judge_run_execute_task" in worker.log and "judge_run_chunk_task" in worker.log
    finally:
        worker.stop()
        shutil.rmtree(sw.model_dir, ignore_errors=True)
