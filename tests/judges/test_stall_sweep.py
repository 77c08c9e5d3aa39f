"""The stall sweep: a run whose heartbeat stopped is resumed, and failed when resuming does not help."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from judges import services
from judges.models import JudgeRun, Judgment
from judges.services import judge_run_chunk, judge_run_execute, judge_runs_sweep
from tests.judges.helpers import judge_setup

pytestmark = pytest.mark.django_db


@pytest.fixture
def lost_tasks(monkeypatch):
    """Task messages that never reach a worker (a worker killed with the filesystem broker): the
    runs' ids as each execute task was sent, and each chunk's item ids."""
    sent = {"execute": [], "chunks": []}
    monkeypatch.setattr("judges.tasks.judge_run_execute_task.delay", lambda run_id: sent["execute"].append(run_id))
    monkeypatch.setattr("judges.tasks.judge_run_chunk_task.delay", lambda run_id, ids: sent["chunks"].append(ids))
    return sent


def quiet_for(run: JudgeRun, seconds: int) -> None:
    JudgeRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=seconds))


def sweep(**kw):
    kw.setdefault("stall_s", 600)
    kw.setdefault("max_resumes", 2)
    kw.setdefault("check_backlog", False)
    return judge_runs_sweep(**kw)


@pytest.fixture
def stalled_run(fault_endpoint, lost_tasks, django_capture_on_commit_callbacks):
    """A run claimed by a worker whose chunk tasks were then lost."""
    version, sample, analyst = judge_setup(queries=1, depth=4)
    with django_capture_on_commit_callbacks(execute=True):
        run = services.judge_run_start(version=version, sample=sample, user=analyst)
    judge_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "running" and len(lost_tasks["chunks"]) == 1
    return run


def test_a_run_with_a_fresh_heartbeat_is_left_alone(stalled_run):
    quiet_for(stalled_run, 599)
    assert sweep().resumed == []
    stalled_run.refresh_from_db()
    assert stalled_run.status == "running"


def test_a_stalled_run_is_resumed_then_failed_when_resuming_does_not_help(
        stalled_run, lost_tasks, django_capture_on_commit_callbacks):
    for attempt in (1, 2):
        quiet_for(stalled_run, 3600)
        with django_capture_on_commit_callbacks(execute=True):
            report = sweep()
        assert report.resumed == [stalled_run.pk], str(report)
        stalled_run.refresh_from_db()
        assert stalled_run.status == "queued" and stalled_run.stall_resumes == attempt
        assert re.match(r"No sign of progress for 360\d s: resumed automatically", stalled_run.message)
        assert f"({attempt} of 2 without progress)" in stalled_run.message
        assert lost_tasks["execute"][-1] == stalled_run.pk  # queued again...
        judge_run_execute(run_id=stalled_run.pk)  # ...claimed, and its chunks lost once more
    quiet_for(stalled_run, 3600)
    report = sweep()
    assert report.failed == [stalled_run.pk] and str(report) == f"Stalled runs: failed #{stalled_run.pk}."
    stalled_run.refresh_from_db()
    assert stalled_run.status == "failed" and stalled_run.finished_at is not None
    assert re.match(r"Stalled: no sign of progress for 360\d s, and 2 automatic resume\(s\) judged nothing more "
                    r"\(0 of 4 items have a judgment\)\.", stalled_run.message)
    assert sweep().failed == []  # a failed run is not swept again


def test_progress_between_resumes_starts_the_count_again(stalled_run, lost_tasks, django_capture_on_commit_callbacks):
    for _ in range(2):
        quiet_for(stalled_run, 3600)
        with django_capture_on_commit_callbacks(execute=True):
            sweep()
        judge_run_execute(run_id=stalled_run.pk)
    judge_run_chunk(run_id=stalled_run.pk, item_ids=lost_tasks["chunks"][-1][:1])  # one judgment, then stuck
    quiet_for(stalled_run, 3600)
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep().resumed == [stalled_run.pk]
    stalled_run.refresh_from_db()
    assert (stalled_run.stall_resumes, stalled_run.stall_done_items) == (1, 1)


def test_a_resumed_run_judges_only_its_pending_items_and_succeeds(stalled_run, lost_tasks, inline_chunks,
                                                                   django_capture_on_commit_callbacks):
    judge_run_chunk(run_id=stalled_run.pk, item_ids=lost_tasks["chunks"][0][:2])
    started_at = JudgeRun.objects.get(pk=stalled_run.pk).started_at
    quiet_for(stalled_run, 3600)
    with django_capture_on_commit_callbacks(execute=True):
        sweep()
    judge_run_execute(run_id=stalled_run.pk)  # the worker picks the resumed run up
    run = JudgeRun.objects.get(pk=stalled_run.pk)
    assert inline_chunks == [lost_tasks["chunks"][0][2:]]
    assert run.status == "succeeded" and Judgment.objects.filter(run=run).count() == 4
    assert run.started_at == started_at  # elapsed time spans the whole run


def test_a_stalled_run_whose_items_are_all_judged_is_finished(stalled_run, lost_tasks):
    judge_run_chunk(run_id=stalled_run.pk, item_ids=lost_tasks["chunks"][0])
    # As if the worker had died between its last judgment and ending the run.
    JudgeRun.objects.filter(pk=stalled_run.pk).update(status="running", finished_at=None, message="")
    quiet_for(stalled_run, 3600)
    assert sweep().finished == [stalled_run.pk]
    stalled_run.refresh_from_db()
    assert stalled_run.status == "succeeded"


def test_a_queued_run_whose_execute_task_was_lost_is_queued_again(fault_endpoint, lost_tasks,
                                                                    django_capture_on_commit_callbacks):
    version, sample, analyst = judge_setup(queries=1, depth=2)
    with django_capture_on_commit_callbacks(execute=True):
        run = services.judge_run_start(version=version, sample=sample, user=analyst)
    quiet_for(run, 3600)
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep().resumed == [run.pk]
    assert lost_tasks["execute"] == [run.pk, run.pk]


def test_the_sweep_waits_while_tasks_wait_in_the_queue(stalled_run, monkeypatch):
    monkeypatch.setattr(services, "_broker_backlog", lambda: 3)
    quiet_for(stalled_run, 3600)
    report = sweep(check_backlog=True)
    assert report.resumed == [] and "3 task(s) wait in the queue" in report.deferred
    monkeypatch.setattr(services, "_broker_backlog", lambda: 0)
    assert sweep(check_backlog=True).resumed == [stalled_run.pk]


@pytest.mark.embedded
def test_the_backlog_is_read_from_the_broker_and_counts_only_judge_run_tasks(settings, stalled_run):
    """Beat sends the sweeps together; with the workers busy, the others still wait when this one
    runs. Counted as backlog, they deferred the judge sweep run after run, so a run whose chunks a
    Redis restart had lost waited for ever (bench/faults.py). Only execute and chunk tasks count."""
    from comparisons.tasks import comparisons_sweep_task
    from distill.tasks import students_sweep_task
    from gates.tasks import gate_runs_sweep_task
    from judges.tasks import judge_run_chunk_task, judge_runs_sweep_task
    from sage.celery import app

    settings.CELERY_TASK_DEFAULT_QUEUE = queue = f"sweep-test-{uuid.uuid4().hex[:8]}"
    assert services._broker_backlog() == 0  # Redis has no key for an empty queue
    try:
        for task in (judge_runs_sweep_task, students_sweep_task, comparisons_sweep_task, gate_runs_sweep_task):
            task.apply_async(queue=queue)
        assert services._broker_backlog() == 0
        quiet_for(stalled_run, 3600)
        assert sweep(check_backlog=True).resumed == [stalled_run.pk]
        judge_run_chunk_task.apply_async((stalled_run.pk, [1, 2]), queue=queue)
        judge_run_chunk_task.apply_async((stalled_run.pk, [3]), queue=queue)
        assert services._broker_backlog() == 2
    finally:
        with app.connection_for_write() as connection:
            connection.default_channel.queue_purge(queue)


def test_the_management_command_sweeps_by_hand(stalled_run, django_capture_on_commit_callbacks, capsys):
    quiet_for(stalled_run, 120)
    call_command("judge_runs_sweep", "--stall-s", "600")
    assert capsys.readouterr().out.strip() == "No stalled runs."
    with django_capture_on_commit_callbacks(execute=True):
        call_command("judge_runs_sweep", "--stall-s", "60", "--ignore-queue")
    assert capsys.readouterr().out.strip() == f"Stalled runs: resumed #{stalled_run.pk}."
    stalled_run.refresh_from_db()
    assert stalled_run.status == "queued"
