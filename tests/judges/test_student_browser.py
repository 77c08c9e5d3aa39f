"""An analyst makes a student judge in the browser: the form shows the fields of the chosen backend,
a student backend without a promoted student is refused, the run page shows the hash, the override's
reason and the cost beside the teacher's."""

from __future__ import annotations

import shutil

import pytest

from judges.models import JudgeVersion
from tests.conftest import browser_login, screenshot
from tests.factories import PASSWORD
from tests.judges.student_helpers import promote, student_world


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_analyst_picks_a_student_sees_the_override_and_the_cost_comparison(page, live_server, tiny_model,
                                                                               finish_run,
                                                                               django_capture_on_commit_callbacks):
    from judges.services import judge_run_start

    sw = student_world(*tiny_model, queries=8, depth=3)
    try:
        browser_login(page, live_server, sw.analyst.username, PASSWORD)
        page.goto(f"{live_server.url}/judges/new/")
        page.select_option("select[name=backend]", "openai")
        assert page.locator("select[name=endpoint_name]").is_visible()
        assert not page.locator("select[name=student_model]").is_visible()
        assert not page.locator("input[name=price_per_1k]").is_visible()
        page.select_option("select[name=backend]", "imported")
        assert page.locator("input[name=price_per_1k]").is_visible()
        assert not page.locator("select[name=endpoint_name]").is_visible()
        page.select_option("select[name=backend]", "student")
        assert page.locator("select[name=student_model]").is_visible()
        assert not page.locator("input[name=model_name]").is_visible()
        assert not page.locator("input[name=precedent_k]").is_visible()
        # No student is promoted yet: none to pick, and saving is refused with a reason.
        page.fill("input[name=name]", "student in the browser")
        page.select_option("select[name=surface]", str(sw.surface.pk))
        page.select_option("select[name=policy_version]", str(sw.policy_version.pk))
        page.get_by_role("button", name="Save", exact=True).click()
        page.locator(".errorlist", has_text="Pick a promoted student model.").wait_for()
        screenshot(page, "student-judge-refused")
        assert not JudgeVersion.objects.filter(judge__name="student in the browser").exists()

        promote(sw, override_reason="misses the bar by 0.02 on 4 test queries; approved for the pilot")
        page.goto(f"{live_server.url}/judges/new/")
        page.select_option("select[name=backend]", "student")
        option = page.locator("select[name=student_model] option", has_text=sw.student.name)
        assert "override on" in option.inner_text() and "approved for the pilot" in option.inner_text()
        page.fill("input[name=name]", "student in the browser")
        page.select_option("select[name=surface]", str(sw.surface.pk))
        page.select_option("select[name=student_model]", str(sw.student.pk))
        page.select_option("select[name=policy_version]", str(sw.policy_version.pk))
        screenshot(page, "student-judge-form")
        page.get_by_role("button", name="Save", exact=True).click()
        page.wait_for_url("**/judges/*/")
        page.locator(".promotion-reason", has_text="approved for the pilot").wait_for()
        screenshot(page, "student-judge-page")

        version = JudgeVersion.objects.get(judge__name="student in the browser")
        with django_capture_on_commit_callbacks(execute=False):
            run = judge_run_start(version=version, sample=sw.sample, user=sw.analyst)
        run = finish_run(run)
        page.goto(f"{live_server.url}/judges/runs/{run.pk}/")
        page.locator("#run-student", has_text=sw.student.model_hash[:12]).wait_for()
        assert "approved for the pilot" in page.locator("#run-student").inner_text()
        comparison = page.locator("#cost-comparison")
        assert sw.teacher_run.judge_version.judge.name in comparison.inner_text()
        assert "$2.5000" in comparison.inner_text() and "×" in comparison.locator(".teacher-cost").inner_text()
        screenshot(page, "student-run-cost")
    finally:
        shutil.rmtree(sw.model_dir, ignore_errors=True)
