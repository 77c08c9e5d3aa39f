"""A reviewer resolves a disagreement as "judge wrong" in Chromium and sees the new precedent and the draft."""

import pytest

from calibration.models import Disagreement
from tests.calibration.helpers import calibrated_run
from tests.conftest import browser_login, screenshot
from tests.factories import PASSWORD


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_judge_wrong_creates_a_precedent_and_a_policy_draft(page, live_server):
    run, items, analyst = calibrated_run(judge_labels=[3, 0, 1, 2], human_labels=[[0, 0, 1, 2]])
    browser_login(page, live_server, analyst.username, PASSWORD)
    page.goto(f"{live_server.url}/calibration/runs/{run.pk}/")
    page.fill('input[name="min_distance"]', "2")
    page.click("#find-disagreements")
    page.wait_for_url("**/calibration/triage/?run=*")
    page.click("#triage-table a")
    page.check('input[name="resolution"][value="judge_wrong"]')
    page.select_option("#triage-clause", "relevance")
    page.fill("#triage-note", "Shares the query's words but answers another question.")
    page.fill("#triage-amendment", "Matching the query's words is not enough: the passage must answer it.")
    screenshot(page, "triage-before")
    page.click("#resolve-button")
    page.wait_for_url("**/calibration/triage/?run=*")
    d = Disagreement.objects.get()
    page.goto(f"{live_server.url}/calibration/triage/{d.pk}/")
    page.click("#triage-precedent")
    assert page.locator("#precedent-rationale").inner_text() == "human 0 says 0"
    assert "accepted" in page.locator("hgroup").inner_text()
    page.go_back()
    page.click("#triage-draft")
    assert "Matching the query's words is not enough" in page.locator("#policy-text").input_value()
    screenshot(page, "triage-policy-draft")
