"""A failed run says so on its page and in the runs table, and its page stops polling."""

from __future__ import annotations

import pytest

from judges.services import judge_run_start
from judges.testing.fault_server import running_fault_server
from tests.conftest import browser_login, screenshot
from tests.factories import PASSWORD
from tests.judges.helpers import judge_setup, largest_prompt_tokens, lengthen, start_and_lose, web_only_endpoint

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.worker
def test_a_failed_run_shows_its_banner_and_stops_polling(page, live_server, celery_worker_process, fault_endpoint,
                                                        settings):
    web_only_endpoint(settings, fault_endpoint)  # the worker cannot run its chunks: the task raises
    version, sample, analyst = judge_setup(queries=2, depth=3, endpoint="web-only")
    run = judge_run_start(version=version, sample=sample, user=analyst)
    browser_login(page, live_server, analyst.username, PASSWORD)
    polls = []
    page.on("request", lambda request: polls.append(request.url) if f"/judges/runs/{run.pk}/" in request.url else None)
    page.goto(f"{live_server.url}/judges/runs/{run.pk}/")
    banner = page.locator("#run-banner")
    banner.wait_for(timeout=60_000)
    assert banner.get_attribute("role") == "alert"
    assert "This run failed." in banner.inner_text()
    assert "Endpoint 'web-only' is not configured on this worker" in banner.inner_text()
    assert page.locator("#run-state").inner_text() == "Failed"
    page.wait_for_load_state("networkidle")
    assert page.locator("#run-status").get_attribute("hx-trigger") is None
    seen = len(polls)
    page.wait_for_timeout(3000)
    assert len(polls) == seen, "the page still polls a run that has ended"
    screenshot(page, "judge-run-failed")

    page.goto(f"{live_server.url}/judges/")
    row = page.locator(f"#run-row-{run.pk}")
    assert row.locator(".sage-badge").inner_text() == "Failed"
    assert "A worker task failed" in row.inner_text()
    screenshot(page, "judge-runs-table-failed")


def test_a_run_mostly_in_error_is_marked_finished_with_errors(page, live_server, settings, finish_run):
    with running_fault_server(report_context=False) as sizing:
        settings.SAGE_JUDGE_ENDPOINTS = {"fault": {"base_url": sizing.base_url, "api_key": "t",
                                                   "json_mode": "json_schema", "context_tokens": None}}
        version, sample, analyst = judge_setup(queries=1, depth=4, max_tokens=200)
        context = largest_prompt_tokens(version, sample) + 300
    with running_fault_server(context_tokens=context, report_context=False) as server:
        settings.SAGE_JUDGE_ENDPOINTS = {"fault": {"base_url": server.base_url, "api_key": "t",
                                                   "json_mode": "json_schema", "context_tokens": None}}
        lengthen(sample, 3)
        run = finish_run(start_and_lose(version, sample, analyst))  # judged here, not by a worker
    assert run.status == "with_errors"
    browser_login(page, live_server, analyst.username, PASSWORD)
    page.goto(f"{live_server.url}/judges/runs/{run.pk}/")
    banner = page.locator("#run-banner")
    assert "This run finished with errors." in banner.inner_text()
    assert "3 of 4 items (75%) ended in an error" in banner.inner_text()
    assert "context_length" in page.locator("#errors-by-kind").inner_text()
    screenshot(page, "judge-run-finished-with-errors")
    page.goto(f"{live_server.url}/judges/")
    assert page.locator(f"#run-row-{run.pk} .sage-badge").inner_text() == "Finished with errors"
