"""An analyst opens a comparison, reads its verdicts and chart, drills into the query that moved most,
and sees a refused comparison explained in the form; a reviewer sees the page without the forms."""

from __future__ import annotations

import pytest

from comparisons.services import comparison_create, comparison_refresh
from tests.comparisons.helpers import comparison_traffic, imported_judge
from tests.conftest import browser_login, screenshot
from tests.factories import PASSWORD, UserFactory

Q, D = 10, 4


def _grade(variant, q, rank):
    # The treatment loses relevant results on most queries: a regression the page must show.
    if variant == "control" or rank == 1:
        return 3 if rank < 3 else 2
    return 0 if q else 3  # one query improves; nine regress


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_analyst_reads_a_comparison_and_its_drill_down(page, live_server):
    surface = comparison_traffic(slug="cmp-browser", queries=Q, depth=D)
    judge, analyst = imported_judge(surface, grade=_grade, queries=Q, depth=D)
    control, treatment = surface.variants.get(name="control"), surface.variants.get(name="treatment")
    comparison = comparison_create(surface=surface, control=control, treatment=treatment, judge_version=judge, k=D,
                                   user=analyst, name="dense vs bm25 <b>bold</b>")
    comparison = comparison_refresh(comparison_id=comparison.pk)
    assert comparison.status == "done", comparison.message

    browser_login(page, live_server, analyst.username, PASSWORD)
    page.goto(f"{live_server.url}/comparisons/")
    page.click(f"a[href='/comparisons/{comparison.pk}/'] >> nth=1")
    page.locator("#metric-table").wait_for()
    assert page.locator("h1").inner_text() == "dense vs bm25 <b>bold</b>"  # escaped, shown as typed
    assert page.locator("tr[data-metric='ndcg@4'] [data-verdict]").inner_text() == "regression"
    page.locator("#delta-chart svg.marks").wait_for()
    screenshot(page, "comparison-page")

    worst = page.locator("#query-table tbody tr").first
    worst_delta = float(worst.locator("td").nth(3).inner_text())
    assert worst_delta < 0
    worst.locator("a.query-link").click()
    page.locator("#side-by-side").wait_for()
    assert page.locator("#control-list li").count() == D and page.locator("#treatment-list li").count() == D
    assert page.locator("#treatment-list .sage-badge", has_text="new").count() == D - 1
    assert "relevance=3" in page.locator("#control-list").inner_text()
    screenshot(page, "comparison-drill-down")

    page.goto(f"{live_server.url}/comparisons/")
    page.select_option("select[name=control]", str(control.pk))
    page.select_option("select[name=treatment]", str(control.pk))
    page.select_option("select[name=judge_version]", str(judge.pk))
    page.fill("input[name=k]", str(D))
    page.click("#start-comparison")
    page.locator("#comparison-errors", has_text="two different variants").wait_for()
    screenshot(page, "comparison-refused")

    page.goto(f"{live_server.url}/comparisons/history/?treatment={treatment.pk}")
    page.locator("#history-chart svg.marks").wait_for()
    screenshot(page, "comparison-history")

    reviewer = UserFactory(username="cmp-rita", roles=["reviewer"])
    page.context.clear_cookies()
    browser_login(page, live_server, reviewer.username, PASSWORD)
    page.goto(f"{live_server.url}{comparison.get_absolute_url()}")
    page.locator("#metric-table").wait_for()
    assert page.locator("#slice-form").count() == 0 and page.locator("#comparison-role-note").count() == 1
