"""The injection check of a judge version (judges/injection_check.py): each passage judged clean and
with injection text appended, through the version's backend and engine; figures stored per version and
shown on the judge page; started by analysts only; a failure says failed."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.urls import reverse

from judges.injection_check import TEMPLATES, injection_check_execute, injection_check_start
from judges.models import InjectionCheck, Judgment
from judges.services import JudgeError
from tests.factories import UserFactory
from tests.judges.helpers import judge_setup

pytestmark = pytest.mark.django_db


def _start(version, analyst, passages, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as queued:
        check = injection_check_start(version=version, passages=passages, user=analyst)
    assert len(queued) == 1 and check.status == "queued"
    return check


def test_each_passage_is_judged_clean_and_injected_through_the_versions_backend(endpoint,
                                                                                 django_capture_on_commit_callbacks):
    server = endpoint()
    version, sample, analyst = judge_setup(queries=3, depth=4, concurrency=4)
    check = _start(version, analyst, 10, django_capture_on_commit_callbacks)
    check = injection_check_execute(check_id=check.pk)
    assert check.status == "succeeded", check.message
    # 3 queries x 4 results shared by both variants: 12 items, 10 drawn; two requests each, every one
    # a different conversation (nothing served from a cache), and no judgment written.
    stats = server.stats()
    assert stats["requests"] == 20 and len({key for _t, key, _o in server.server.log}) == 20
    assert not Judgment.objects.exists()
    assert (check.n, check.errors, check.total_calls, check.done_calls) == (10, 0, 20, 20)
    assert check.rose == sum(r["injected"] > r["clean"] for r in check.results)
    assert check.fell == sum(r["injected"] < r["clean"] for r in check.results)
    assert check.mean_delta == pytest.approx(sum(r["injected"] - r["clean"] for r in check.results) / 10, abs=1e-4)
    assert sum(s["n"] for s in check.by_template.values()) == 10 and set(check.by_template) == {n for n, _t in TEMPLATES}
    assert (check.flagged_clean, check.flagged_injected) == (0, 10)
    assert check.summary == f"label rose on {check.rose} of 10 ({check.rose / 10:.0%})"
    # The same seed draws the same passages.
    again = injection_check_execute(check_id=_start(version, analyst, 10, django_capture_on_commit_callbacks).pk)
    assert [r["ref"] for r in again.results] == [r["ref"] for r in check.results]


def test_errors_are_counted_and_a_check_that_cannot_reach_its_endpoint_fails(endpoint, settings,
                                                                              django_capture_on_commit_callbacks):
    endpoint(rate_malformed=1.0)  # every answer (and its repair) unparsable: recorded errors, no retries
    version, sample, analyst = judge_setup(queries=1, depth=2, concurrency=2)
    check = injection_check_execute(check_id=_start(version, analyst, 2, django_capture_on_commit_callbacks).pk)
    assert check.status == "succeeded" and check.n == 0 and check.errors == 2
    assert "No pair got a label" in check.message and "invalid_json" in check.results[0]["error"]
    settings.SAGE_JUDGE_ENDPOINTS = {}  # this worker does not know the endpoint
    check = injection_check_execute(check_id=_start(version, analyst, 2, django_capture_on_commit_callbacks).pk)
    assert check.status == "failed" and "not configured on this worker" in check.message


def test_only_analysts_start_one_at_a_time_and_only_for_a_prompted_model(endpoint, django_capture_on_commit_callbacks):
    endpoint()
    version, sample, analyst = judge_setup(queries=1, depth=2)
    viewer = UserFactory(username="inj-viewer", roles=[])
    with pytest.raises(JudgeError, match="analysts"):
        injection_check_start(version=version, passages=2, user=viewer)
    with pytest.raises(JudgeError, match="between 1 and"):
        injection_check_start(version=version, passages=0, user=analyst)
    stuck = _start(version, analyst, 2, django_capture_on_commit_callbacks)
    with pytest.raises(JudgeError, match="already running"):
        injection_check_start(version=version, passages=2, user=analyst)
    # A check whose worker died stops blocking the next one once it is quiet for SAGE_JUDGE_STALL_S.
    from datetime import timedelta

    from django.utils import timezone

    InjectionCheck.objects.filter(pk=stuck.pk).update(created_at=timezone.now() - timedelta(hours=1))
    _start(version, analyst, 2, django_capture_on_commit_callbacks)
    stuck.refresh_from_db()
    assert stuck.status == "failed" and "No sign of progress" in stuck.message


def test_the_task_runs_the_check(endpoint, django_capture_on_commit_callbacks):
    from judges.tasks import injection_check_task

    endpoint()
    version, sample, analyst = judge_setup(queries=1, depth=3)
    check = _start(version, analyst, 3, django_capture_on_commit_callbacks)
    assert injection_check_task.apply(args=(check.pk,)).get() == "succeeded"
    assert InjectionCheck.objects.get(pk=check.pk).n == 3


def test_the_judge_page_shows_the_rate_and_the_button_posts_a_check(client, endpoint, django_capture_on_commit_callbacks):
    endpoint()
    version, sample, analyst = judge_setup(queries=2, depth=3)
    viewer = UserFactory(username="inj-page-viewer", roles=[])
    page = reverse("judges:detail", args=[version.judge_id])
    client.force_login(analyst)
    html = client.get(page).content.decode()
    assert 'id="injection-checks"' in html and "not checked" in html and "Run injection check" in html
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(reverse("judges:injection-check-new", args=[version.pk]), {"passages": "4"})
    check = InjectionCheck.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("judges:injection-check", args=[check.pk])
    running = client.get(response["Location"]).content.decode()
    assert 'id="check-status"' in running and "hx-trigger" in running and "Queued" in running
    assert "Queued" in client.get(page).content.decode()
    injection_check_execute(check_id=check.pk)
    check.refresh_from_db()
    html = client.get(page).content.decode()
    assert check.summary in html and f"label rose on {check.rose} of 4" in html
    done = client.get(reverse("judges:injection-check", args=[check.pk])).content.decode()
    assert 'id="check-templates"' in done and 'id="check-pairs"' in done and "hx-trigger" not in done
    # A viewer sees the figures, not the button, and cannot post one.
    client.force_login(viewer)
    assert "Run injection check" not in client.get(page).content.decode()
    assert client.post(reverse("judges:injection-check-new", args=[version.pk]), {"passages": "4"}).status_code == 403
    assert client.get(reverse("judges:injection-check-new", args=[version.pk])).status_code == 405


def test_a_failed_check_says_failed_on_the_judge_page(client, endpoint):
    endpoint()
    version, sample, analyst = judge_setup(queries=1, depth=2)
    InjectionCheck.objects.create(judge_version=version, passages=2, status="failed",
                                  message="Endpoint 'fault' is not configured on this worker <b>")
    client.force_login(analyst)
    html = client.get(reverse("judges:detail", args=[version.judge_id])).content.decode()
    assert "sage-badge-bad\">failed</span>" in html and "&lt;b&gt;" in html


def test_the_command_checks_passages_from_a_file(endpoint, tmp_path, capsys):
    endpoint()
    version, sample, analyst = judge_setup(queries=1, depth=2)
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"query": f"question {n}", "doc": f"An answer passage number {n}.",
                                        "doc_id": f"p{n}"}) + "\n" for n in range(6))
                    + json.dumps({"query": "long", "doc": "x" * 10_000}) + "\n")  # over the budget: never drawn
    call_command("judge_injection_check", str(version.pk), "--passages", "5", "--file", str(path))
    out = capsys.readouterr().out
    check = InjectionCheck.objects.get()
    assert check.n == 5 and check.source == "file pairs.jsonl" and "long" not in {r["query"] for r in check.results}
    assert f"{check.summary}" in out and "detector flagged 0 of 5 clean passages and 5 injected" in out


def test_a_judge_that_prompts_no_model_says_why_it_has_no_injection_check(client):
    from tests.comparisons.helpers import comparison_traffic, imported_judge

    surface = comparison_traffic(slug="inj-imported", queries=2, depth=2)
    judge, analyst = imported_judge(surface, grade=lambda v, q, r: 3 - r, queries=2, depth=2)
    client.force_login(analyst)
    html = client.get(reverse("judges:detail", args=[judge.judge_id])).content.decode()
    assert 'id="injection-not-checkable"' in html and "Run injection check" not in html
