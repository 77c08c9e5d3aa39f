"""Judge runs through the services, with chunk tasks run in-process against the fault server."""

from decimal import Decimal

import pytest

from judges.models import Judgment
from judges.services import (
    JudgeError,
    judge_run_cancel,
    judge_run_chunk,
    judge_run_estimate,
    judge_run_start,
    judge_version_create,
)
from judges.testing.fault_server import running_fault_server
from tests.judges.helpers import judge_setup

pytestmark = pytest.mark.django_db


def test_a_run_judges_every_item_once_and_records_what_it_was_made_under(
        fault_endpoint, inline_chunks, run_inline, settings):
    settings.SAGE_JUDGE_CHUNK_SIZE = 5
    version, sample, analyst = judge_setup()
    run = run_inline(version, sample, analyst)
    assert run.status == "succeeded"
    assert [len(c) for c in inline_chunks] == [5, 5, 2]
    judgments = list(Judgment.objects.filter(run=run))
    assert len(judgments) == sample.item_count == run.done_items == 12
    j = judgments[0]
    assert j.status == "ok" and set(j.labels) == {"relevance"}
    assert (j.judge_version_id, j.policy_version_id, j.rubric_hash) == (
        version.pk, version.policy_version_id, version.policy_version.rubric_hash)
    assert j.item_hash == j.item.hash and "BEGIN DATA" in j.prompt and j.raw_response


def test_cost_is_tokens_times_the_version_prices(fault_endpoint, run_inline):
    version, sample, analyst = judge_setup(queries=1, depth=2)
    run = run_inline(version, sample, analyst)
    for j in Judgment.objects.filter(run=run):
        assert j.tokens_in > 0 and j.tokens_out > 0
        assert j.cost == (Decimal("2.50") * j.tokens_in + Decimal("10") * j.tokens_out) / 1_000_000
    assert run.cost == sum(j.cost for j in Judgment.objects.filter(run=run))
    assert run.tokens_in == sum(j.tokens_in for j in Judgment.objects.filter(run=run))


def test_a_second_run_reuses_cached_judgments_at_no_cost_unless_bypassed(
        fault_endpoint, run_inline):
    version, sample, analyst = judge_setup(queries=1, depth=3)
    first = run_inline(version, sample, analyst)
    second = run_inline(version, sample, analyst)
    assert second.cached_items == 3 and second.cost == 0
    cached = Judgment.objects.filter(run=second)
    assert all(j.cached_from.run_id == first.pk and j.labels == j.cached_from.labels for j in cached)
    assert judge_run_estimate(version=version, sample=sample).cached == 3
    fresh = run_inline(version, sample, analyst, bypass_cache=True)
    assert fresh.cached_items == 0 and fresh.cost > 0


def test_a_new_judge_version_does_not_hit_the_old_cache(fault_endpoint, run_inline):
    version, sample, analyst = judge_setup(queries=1, depth=2)
    run_inline(version, sample, analyst)
    v2 = judge_version_create(judge=version.judge, user=analyst, temperature=0.5, change_note="warmer")
    assert v2.number == 2 and version.temperature == 0.0
    run = run_inline(v2, sample, analyst)
    assert run.cached_items == 0


def test_a_redelivered_or_resumed_chunk_judges_only_what_is_missing(fault_endpoint, monkeypatch, run_inline):
    version, sample, analyst = judge_setup(queries=2, depth=4)
    monkeypatch.setattr("judges.tasks.judge_run_chunk_task.delay", lambda *a: None)  # the worker "dies"
    run = run_inline(version, sample, analyst)
    ids = list(sample.sample_items.values_list("item_id", flat=True))
    assert judge_run_chunk(run_id=run.pk, item_ids=ids[:3]) == 3          # got this far before the kill
    assert judge_run_chunk(run_id=run.pk, item_ids=ids) == len(ids) - 3   # redelivered: the rest only
    assert judge_run_chunk(run_id=run.pk, item_ids=ids) == 0              # again: nothing
    run.refresh_from_db()
    assert run.status == "succeeded" and run.done_items == Judgment.objects.filter(run=run).count() == len(ids)


def test_every_fault_kind_ends_as_a_judgment_or_a_recorded_error(settings, run_inline):
    with running_fault_server(rate_429=0.1, rate_500=0.1, rate_malformed=0.1, rate_out_of_scale=0.1,
                              retry_after_s=0.01, seed=3) as server:
        settings.SAGE_JUDGE_ENDPOINTS = {"fault": {"base_url": server.base_url, "api_key": "t", "json_mode": "json_schema"}}
        version, sample, analyst = judge_setup(queries=5, depth=8)
        run = run_inline(version, sample, analyst)
    judgments = Judgment.objects.filter(run=run)
    assert run.status == "succeeded" and judgments.count() == 40
    for j in judgments.filter(status="error"):
        assert j.labels is None and j.error_kind in {"invalid_json", "out_of_scale", "rate_limited", "server_error"}
        assert j.error_message
    assert judgments.filter(status="ok").count() >= 30
    assert run.error_items == judgments.filter(status="error").count()


def test_cancelling_stops_new_work_and_keeps_what_was_judged(fault_endpoint, monkeypatch, run_inline):
    version, sample, analyst = judge_setup(queries=2, depth=4)
    monkeypatch.setattr("judges.tasks.judge_run_chunk_task.delay", lambda *a: None)
    run = run_inline(version, sample, analyst)
    ids = list(sample.sample_items.values_list("item_id", flat=True))
    judge_run_chunk(run_id=run.pk, item_ids=ids[:2])
    assert judge_run_cancel(run=run, user=analyst)
    assert judge_run_chunk(run_id=run.pk, item_ids=ids) == 0
    run.refresh_from_db()
    assert run.status == "cancelled" and Judgment.objects.filter(run=run).count() == 2
    assert not judge_run_cancel(run=run, user=analyst)


def test_starting_needs_an_analyst_and_a_matching_surface(fault_endpoint, reviewer):
    version, sample, analyst = judge_setup(queries=1, depth=1)
    with pytest.raises(JudgeError, match="Only analysts"):
        judge_run_start(version=version, sample=sample, user=reviewer)
    other_version, _, _ = judge_setup(queries=1, depth=1, slug="other-web")
    with pytest.raises(JudgeError, match="different surfaces"):
        judge_run_start(version=other_version, sample=sample, user=analyst)


def test_an_unknown_endpoint_is_refused(fault_endpoint):
    with pytest.raises(JudgeError, match="Unknown endpoint 'nowhere'"):
        judge_setup(endpoint="nowhere")


def test_the_estimate_counts_items_tokens_and_cost(fault_endpoint):
    version, sample, _ = judge_setup(queries=2, depth=3)
    estimate = judge_run_estimate(version=version, sample=sample)
    assert estimate.items == 6 and estimate.cached == 0
    assert estimate.tokens_in > 0 and estimate.cost > 0


@pytest.mark.parametrize("client", ["direct", "sdk"])
def test_the_endpoints_client_setting_picks_the_http_client(fault_endpoint, settings, client):
    from judges.services import _backend_for

    version, _, _ = judge_setup()
    settings.SAGE_JUDGE_ENDPOINTS = {name: {**endpoint, "client": client}
                                     for name, endpoint in settings.SAGE_JUDGE_ENDPOINTS.items()}
    assert _backend_for(version).client_name == client


@pytest.mark.parametrize("configured, concurrency, size", [
    (0, 8, 100),     # the default: 100 items...
    (0, 64, 256),    # ...or 4 waves of the judge's concurrency where that is more
    (5, 64, 5),      # a configured size is taken as it is
    (1000, 8, 1000),
])
def test_a_chunk_holds_several_waves_of_the_judges_concurrency_unless_a_size_is_set(
        fault_endpoint, settings, configured, concurrency, size):
    from judges.services import judge_chunk_size

    settings.SAGE_JUDGE_CHUNK_SIZE = configured
    version, _, _ = judge_setup(concurrency=concurrency)
    assert judge_chunk_size(version) == size


def test_a_high_concurrency_run_fans_out_in_chunks_of_four_waves(fault_endpoint, monkeypatch, settings):
    from judges.models import JudgeRun
    from judges.services import judge_run_execute

    settings.SAGE_JUDGE_CHUNK_SIZE = 0
    version, sample, _ = judge_setup(queries=30, depth=10, concurrency=32)  # 300 items; 4 waves = 128
    queued: list[list[int]] = []
    monkeypatch.setattr("judges.tasks.judge_run_chunk_task.delay", lambda run_id, item_ids: queued.append(item_ids))
    run = JudgeRun.objects.create(judge_version=version, sample=sample, total_items=sample.item_count)
    assert judge_run_execute(run_id=run.pk) == 3
    assert [len(chunk) for chunk in queued] == [128, 128, 44]
