"""A judge run through Redis and a real Celery worker process, against the fault server."""

import pytest

from judges.models import JudgeRun, Judgment
from judges.services import judge_run_start
from tests.conftest import wait_for
from tests.judges.helpers import judge_setup


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_completes_a_run_in_chunks(celery_worker_process, fault_endpoint, settings):
    settings.SAGE_JUDGE_CHUNK_SIZE = 4  # only this process; the worker uses its default
    version, sample, analyst = judge_setup(queries=3, depth=5)
    run = judge_run_start(version=version, sample=sample, user=analyst)
    finished = wait_for(lambda: JudgeRun.objects.filter(pk=run.pk).exclude(status__in=JudgeRun.ACTIVE).first(),
                        timeout=60, message="the worker to finish the run")
    assert finished.status == "succeeded", finished.message + celery_worker_process.log[-3000:]
    assert Judgment.objects.filter(run=run).count() == 15 == finished.done_items
    assert "judge_run_chunk_task" in celery_worker_process.log
