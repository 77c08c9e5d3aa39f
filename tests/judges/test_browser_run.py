"""An analyst starts a run from the UI and watches the progress bar reach 100%."""

import pytest

from tests.conftest import browser_login, screenshot
from tests.factories import PASSWORD
from tests.judges.helpers import judge_setup


@pytest.mark.browser
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_an_analyst_starts_a_run_and_sees_it_finish(page, live_server, celery_worker_process, fault_endpoint):
    version, sample, analyst = judge_setup(queries=3, depth=6)
    browser_login(page, live_server, analyst.username, PASSWORD)
    page.goto(f"{live_server.url}/judges/runs/new/")
    page.select_option("select[name=version]", str(version.pk))
    page.select_option("select[name=sample]", str(sample.pk))
    page.locator("#estimate strong", has_text="18").first.wait_for()
    screenshot(page, "judge-run-estimate")
    page.click("#start-run")
    page.wait_for_url("**/judges/runs/*/")
    page.locator("#run-percent", has_text="100%").wait_for(timeout=60_000)
    # The last chunk's counters reach 100% a moment before the run is finalized; the page keeps
    # polling while the run is active and must then show the final state.
    page.locator("#run-state", has_text="succeeded").wait_for(timeout=15_000)
    assert page.locator("#run-progress").get_attribute("value") == "18"
    screenshot(page, "judge-run-finished")
