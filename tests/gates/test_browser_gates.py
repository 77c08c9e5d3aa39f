"""An analyst sets up a gate in the browser (a wrong metric name is refused with the reason, the typed
form kept), runs it on a candidate, and watches the run page turn from running to the verdict."""

import pytest

from gates.models import Gate, GateRun
from gates.services import gate_run_refresh
from tests.conftest import browser_login, screenshot, wait_for
from tests.factories import PASSWORD
from tests.gates.helpers import gate_world


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_analyst_creates_and_runs_a_gate(page, live_server):
    gate, analyst = gate_world(slug="browser-gate")
    browser_login(page, live_server, analyst.username, PASSWORD)
    page.goto(f"{live_server.url}/gates/")
    page.click("#gate-new")
    form = page.locator("#gate-form")
    form.locator("input[name=name]").fill("ramp-check")
    form.locator("select[name=surface]").select_option(str(gate.surface_id))
    form.locator("select[name=baseline]").select_option(str(gate.baseline_id))
    form.locator("select[name=judge_version]").select_option(str(gate.judge_version_id))
    form.locator("input[name=k]").fill("5")
    form.locator("textarea[name=metrics]").fill("ndcg@5 -0.02\nrecall@5 -0.02")
    form.locator("button[type=submit]").click()
    page.wait_for_selector("#gate-form [role=alert]")
    assert "Unknown metric 'recall@5'" in page.locator("#gate-form [role=alert]").inner_text()
    assert page.locator("textarea[name=metrics]").input_value() == "ndcg@5 -0.02\nrecall@5 -0.02"
    screenshot(page, "gates-form-refused")

    page.locator("textarea[name=metrics]").fill("ndcg@5 -0.02\nprecision@5 -0.05")
    page.locator("#gate-form button[type=submit]").click()
    page.wait_for_selector("#gate-recipe")
    created = Gate.objects.get(name="ramp-check")
    assert created.metrics == {"ndcg@5": -0.02, "precision@5": -0.05}

    page.locator("#gate-run-form select[name=candidate]").select_option(label="worse (treatment)")
    page.locator("#gate-run-form button[type=submit]").click()
    page.wait_for_selector("#gate-run-status")
    assert page.locator("#gate-run-state").get_attribute("data-status") == "running"
    screenshot(page, "gates-run-running")

    # What the follow task does on a worker; the page polls and swaps the verdict in.
    run = GateRun.objects.get(gate=created)
    gate_run_refresh(run_id=run.pk)
    wait_for(lambda: page.locator("#gate-run-state").get_attribute("data-status") == "regression", timeout=15,
             message="the page to show the verdict")
    assert page.locator("#gate-run-exit").inner_text() == "1"
    assert "regression" in page.locator("#gate-run-metrics").inner_text()
    screenshot(page, "gates-run-regression")
    page.click("#gate-run-comparison")
    page.wait_for_url(f"{live_server.url}/comparisons/{run.comparison_id}/")
