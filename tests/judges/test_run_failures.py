"""Runs whose items fail, whose prompts do not fit the model, or whose tasks raise: never "succeeded"."""

from __future__ import annotations

import pytest

from judges.models import JudgeRun, Judgment
from judges.services import JudgeError, judge_run_fail, judge_run_prompt_budget, judge_run_start
from tests.judges.helpers import judge_setup, largest_prompt_tokens, lengthen

pytestmark = pytest.mark.django_db


def test_a_run_whose_every_item_overflows_the_context_fails_and_says_why(endpoint, run_inline):
    endpoint(context_tokens=100, report_context=False)  # the server refuses but does not tell beforehand
    version, sample, analyst = judge_setup(queries=1, depth=3, max_tokens=200)
    run = run_inline(version, sample, analyst)
    assert run.status == JudgeRun.Status.FAILED and run.status != "succeeded"
    assert run.done_items == run.error_items == 3
    assert run.message.startswith("Every item (3) ended in an error: context_length (3)")
    assert "context window" in run.message
    for judgment in Judgment.objects.filter(run=run):
        assert judgment.error_kind == "context_length"
        assert "maximum context length is 100 tokens" in judgment.error_message
        assert judgment.attempts == 1  # a context overflow is not retried


def test_a_run_with_most_items_in_error_finishes_with_errors(endpoint, run_inline, settings):
    endpoint()
    version, sample, analyst = judge_setup(queries=1, depth=4, max_tokens=200)
    endpoint(context_tokens=largest_prompt_tokens(version, sample) + 200 + 100, report_context=False)
    lengthen(sample, 3)
    run = run_inline(version, sample, analyst)
    assert run.status == JudgeRun.Status.WITH_ERRORS
    assert (run.done_items, run.error_items) == (4, 3)
    assert run.message.startswith("3 of 4 items (75%) ended in an error, more than the 50%")
    assert run.get_status_display() == "Finished with errors" and run.ended_badly

    settings.SAGE_JUDGE_ERROR_PERCENT = 80
    tolerant = run_inline(version, sample, analyst)
    assert tolerant.status == JudgeRun.Status.SUCCEEDED and tolerant.error_items == 3
    assert tolerant.message.startswith("3 item(s) ended in a recorded error: context_length (3)")


def test_a_few_errors_still_succeed_with_a_note(endpoint, run_inline):
    endpoint()
    version, sample, analyst = judge_setup(queries=1, depth=4, max_tokens=200)
    endpoint(context_tokens=largest_prompt_tokens(version, sample) + 200 + 100, report_context=False)
    lengthen(sample, 1)
    run = run_inline(version, sample, analyst)
    assert run.status == JudgeRun.Status.SUCCEEDED and run.error_items == 1
    assert "1 item(s) ended in a recorded error" in run.message


def test_a_run_is_refused_when_its_largest_prompt_exceeds_the_context_the_server_reports(endpoint):
    endpoint()
    version, sample, analyst = judge_setup(queries=1, depth=3, max_tokens=300)
    short = largest_prompt_tokens(version, sample)
    endpoint(context_tokens=short + 300 + 50)  # reported at /props, as llama.cpp's server does
    assert judge_run_prompt_budget(version=version, sample=sample, precedent_set=None).fits
    lengthen(sample, 1, chars=2000)
    budget = judge_run_prompt_budget(version=version, sample=sample, precedent_set=None)
    assert budget.prompt_tokens > short + 400 and budget.context_source == "reported by the server"
    with pytest.raises(JudgeError) as refused:
        judge_run_start(version=version, sample=sample, user=analyst)
    message = str(refused.value)
    assert (f"the largest is about {budget.prompt_tokens:,} tokens (estimated at 4 characters a token) plus 300 "
            "reserved for the answer") in message
    assert f"endpoint 'fault' has a context of {short + 350:,} tokens (reported by the server)" in message
    assert not JudgeRun.objects.exists()


def test_the_context_setting_is_checked_when_the_server_does_not_say(endpoint, settings):
    endpoint(report_context=False)
    version, sample, analyst = judge_setup(queries=1, depth=2, max_tokens=300)
    settings.SAGE_JUDGE_ENDPOINTS["fault"]["context_tokens"] = 256
    with pytest.raises(JudgeError, match=r"a context of 256 tokens \(SAGE_ENDPOINT_FAULT_CONTEXT_TOKENS\)"):
        judge_run_start(version=version, sample=sample, user=analyst)
    settings.SAGE_JUDGE_ENDPOINTS["fault"]["context_tokens"] = None
    budget = judge_run_prompt_budget(version=version, sample=sample, precedent_set=None)
    assert budget.context_tokens is None and budget.fits  # unknown: nothing to check against


def test_the_budget_shows_the_k_precedents_that_take_the_most_room(endpoint):
    from precedent.models import PrecedentSet
    from precedent.services import PrecedentData, precedent_create
    from tests.factories import UserFactory

    endpoint(report_context=False)
    version, sample, _ = judge_setup(queries=1, depth=2, precedent_k=2, max_tokens=300)
    policy = version.policy_version.policy
    reviewer = UserFactory(username="curator", roles=["reviewer"])
    sizes = {}
    for size in (100, 2000, 50):
        p = precedent_create(policy=policy, user=reviewer, accept=True, data=PrecedentData(
            query=f"precedent query {size}", body="word " * (size // 5), labels={"relevance": 1}, rationale="because"))
        sizes[size] = [p.pk, p.content_hash]

    def budget(*members: int) -> int:
        snapshot = PrecedentSet.objects.create(policy=policy, hash=f"test-{members}", size=len(members),
                                               members=[sizes[m] for m in members])
        return judge_run_prompt_budget(version=version, sample=sample, precedent_set=snapshot).prompt_tokens

    largest_two = budget(100, 2000)
    assert budget(100, 2000, 50) == largest_two > budget(100, 50) > budget()


def test_failing_a_run_keeps_its_judgments_and_counts_them(fault_endpoint, monkeypatch, run_inline):
    from judges.services import judge_run_chunk

    version, sample, analyst = judge_setup(queries=1, depth=4)
    monkeypatch.setattr("judges.tasks.judge_run_chunk_task.delay", lambda *a: None)
    run = run_inline(version, sample, analyst)
    judge_run_chunk(run_id=run.pk, item_ids=list(sample.sample_items.values_list("item_id", flat=True))[:2])
    assert judge_run_fail(run_id=run.pk, reason="A worker task failed: boom.")
    run.refresh_from_db()
    assert (run.status, run.message, run.done_items, run.finished_at is not None) == (
        "failed", "A worker task failed: boom.", 2, True)
    assert not judge_run_fail(run_id=run.pk, reason="again")  # an ended run stays as it ended
    assert judge_run_chunk(run_id=run.pk, item_ids=[sample.sample_items.last().item_id]) == 0


def test_the_task_failure_handler_fails_the_run(fault_endpoint, django_capture_on_commit_callbacks):
    from judges.tasks import judge_run_chunk_task

    version, sample, analyst = judge_setup(queries=1, depth=1)
    with django_capture_on_commit_callbacks(execute=False):
        run = judge_run_start(version=version, sample=sample, user=analyst)
    judge_run_chunk_task.on_failure(RuntimeError("disk full"), "task-1", (run.pk, [1]), {}, None)
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.message == ("A worker task failed while judging a chunk of items: RuntimeError: disk full. Judgments "
                           "made before it are kept; fix the cause, then Resume. (Celery task task-1)")
