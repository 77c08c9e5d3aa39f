"""A run whose task could not reach the broker (Redis restarting) is left to the stall sweep, not failed."""

from __future__ import annotations

import pytest
from kombu.exceptions import OperationalError as BrokerError

from judges.models import JudgeRun
from judges.services import judge_runs_sweep
from judges.tasks import judge_run_execute_task
from tests.judges.helpers import judge_setup, start_and_lose
from tests.judges.test_stall_sweep import quiet_for

pytestmark = pytest.mark.django_db


def test_a_fan_out_that_cannot_reach_the_broker_leaves_the_run_to_the_sweep(fault_endpoint, monkeypatch, caplog,
                                                                           django_capture_on_commit_callbacks):
    version, sample, analyst = judge_setup(queries=1, depth=3)
    run = start_and_lose(version, sample, analyst)

    def unreachable(*args, **kwargs):
        raise BrokerError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr("judges.tasks.judge_run_chunk_task.delay", unreachable)
    result = judge_run_execute_task.apply(args=(run.pk,))  # through Celery's tracer: on_failure runs
    assert result.failed() and isinstance(result.result, BrokerError)
    run.refresh_from_db()
    assert run.status == JudgeRun.Status.RUNNING, run.message  # claimed, not failed: nobody has to Resume it
    assert "the broker is unreachable" in caplog.text and "left to the stall sweep" in caplog.text
    sent: list[int] = []
    monkeypatch.setattr("judges.tasks.judge_run_execute_task.delay", sent.append)
    quiet_for(run, 3600)
    with django_capture_on_commit_callbacks(execute=True):
        assert judge_runs_sweep(stall_s=600, check_backlog=False).resumed == [run.pk]
    assert sent == [run.pk]


def test_a_task_that_fails_otherwise_still_fails_the_run(fault_endpoint):
    version, sample, analyst = judge_setup(queries=1, depth=3)
    run = start_and_lose(version, sample, analyst)
    judge_run_execute_task.on_failure(ValueError("boom"), "task-1", (run.pk,), {}, None)
    run.refresh_from_db()
    assert run.status == JudgeRun.Status.FAILED and "ValueError: boom" in run.message
