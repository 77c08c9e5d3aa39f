"""The judge run page's reads stay cheap for big runs: item order served by the (run, item) index, an
ended run's count from its counters, latency percentiles kept per process."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from judges.models import JudgeRun, Judgment
from judges.selectors import run_judgments, run_judgments_page, run_stats
from tests.judges.helpers import judge_setup

pytestmark = pytest.mark.django_db


@pytest.fixture
def ended_run(fault_endpoint, inline_chunks, run_inline, settings):
    settings.SAGE_JUDGE_CHUNK_SIZE = 5
    version, sample, analyst = judge_setup()
    run = run_inline(version, sample, analyst)
    assert not run.is_active and run.done_items == 12
    return run


def test_a_runs_judgments_are_listed_in_item_order(ended_run):
    items = [j.item_id for j in run_judgments(ended_run)]
    assert items == sorted(items) and len(items) == 12


def test_an_ended_runs_unfiltered_page_takes_its_count_from_the_run(ended_run):
    with CaptureQueriesContext(connection) as queries:
        page = run_judgments_page(ended_run, page=2, per_page=5)
        rows = list(page)
    assert page.paginator.count == 12 and page.paginator.num_pages == 3 and len(rows) == 5
    assert not any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)
    filtered = run_judgments_page(ended_run, status="ok", per_page=5)
    assert filtered.paginator.count == Judgment.objects.filter(run=ended_run, status="ok").count()


def test_an_ended_runs_latency_percentiles_are_computed_once_until_it_changes(ended_run):
    first = run_stats(ended_run)
    assert first.latency_p50_ms is not None
    Judgment.objects.filter(run=ended_run).update(latency_ms=99_999)
    assert run_stats(ended_run).latency_p50_ms == first.latency_p50_ms  # kept: an ended run does not change
    JudgeRun.objects.filter(pk=ended_run.pk).update(done_items=13)  # e.g. resumed and recounted
    ended_run.refresh_from_db()
    assert run_stats(ended_run).latency_p50_ms == 99_999


def test_a_running_runs_percentiles_are_its_own_and_not_an_ended_runs(ended_run):
    before = run_stats(ended_run).latency_p50_ms
    Judgment.objects.filter(run=ended_run).update(latency_ms=12_345)
    JudgeRun.objects.filter(pk=ended_run.pk).update(status=JudgeRun.Status.RUNNING)
    ended_run.refresh_from_db()
    assert ended_run.is_active
    assert run_stats(ended_run).latency_p50_ms == 12_345 != before
