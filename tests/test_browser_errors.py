"""A refused or failed htmx request always says why, in view, and never takes the typed text with it;
errors a page renders below the fold are scrolled to; error pages look like SAGE."""

import pytest

from policy.models import PolicyVersion
from policy.services import policy_draft_start, policy_draft_update
from tests.conftest import ARTIFACTS, browser_login, screenshot
from tests.factories import PASSWORD, UserFactory, traffic_surface
from tests.policy_factories import publish_policy

MINE = "# Relevance\n\nMy careful rewrite that must not be lost.\n"


def _editing(page, live_server):
    """Rita, a reviewer, with the draft editor open and her text typed (not saved)."""
    v1 = publish_policy()
    rita = UserFactory(username="rita", roles=["reviewer"])
    draft = policy_draft_start(policy=v1.policy, user=rita)
    browser_login(page, live_server, "rita", PASSWORD)
    page.goto(f"{live_server.url}/policies/{v1.policy_id}/draft/")
    page.fill("#policy-text", MINE)
    return rita, draft


def _toast(page):
    toast = page.locator("#sage-toasts .sage-toast").last
    toast.wait_for(timeout=5_000)
    box = toast.bounding_box()
    viewport = page.viewport_size
    assert box and box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"], "toast outside the viewport"
    return toast.inner_text()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_edit_conflict_shows_the_conflict_and_keeps_the_text(page, live_server):
    rita, draft = _editing(page, live_server)
    ada = UserFactory(username="ada", roles=["admin"])
    policy_draft_update(draft=draft, user=ada, expected_lock_version=draft.lock_version, text="# Ada's text\n")
    page.click("#save-draft")
    page.locator("#conflict").wait_for(timeout=5_000)  # the 409 fragment is swapped in, not dropped
    assert page.locator("#policy-text").input_value() == MINE
    screenshot(page, "errors-policy-409")
    assert PolicyVersion.objects.get(pk=draft.pk).text == "# Ada's text\n"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_invalid_rubric_shows_its_errors_and_keeps_the_text(page, live_server):
    _editing(page, live_server)
    page.fill('input[name="dim-0-key"]', "")
    page.click("#save-draft")
    page.locator("#save-error").wait_for(timeout=5_000)
    assert page.locator('input[name="dim-0-key"][aria-invalid="true"]').count() == 1
    assert page.locator("#policy-text").input_value() == MINE


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_save_refused_for_the_role_shows_why_in_view_and_keeps_the_text(page, live_server):
    rita, draft = _editing(page, live_server)
    rita.groups.clear()  # her role is taken away while she types
    page.click("#save-draft")
    text = _toast(page)
    assert "403" in text and "Only reviewers and admins can edit policies." in text
    assert page.locator("#policy-text").input_value() == MINE
    screenshot(page, "errors-policy-403-toast")
    assert PolicyVersion.objects.get(pk=draft.pk).text != MINE


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_network_failure_is_shown_and_the_text_kept(page, live_server):
    _editing(page, live_server)
    page.route("**/draft/", lambda route: route.abort() if route.request.method == "POST" else route.continue_())
    page.click("#save-draft")
    assert "Could not reach the server" in _toast(page)
    assert page.locator("#policy-text").input_value() == MINE


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_ended_session_does_not_swap_the_login_page_over_the_form(page, live_server):
    _editing(page, live_server)
    page.context.clear_cookies(name="sessionid")
    page.click("#save-draft")
    assert "session has ended" in _toast(page)
    assert page.locator("#policy-text").input_value() == MINE
    assert page.locator("#editor #id_username").count() == 0


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_toast_goes_away_with_the_next_success(page, live_server):
    _editing(page, live_server)
    page.route("**/draft/", lambda route: route.abort() if route.request.method == "POST" else route.continue_())
    page.click("#save-draft")
    _toast(page)
    page.unroute("**/draft/")
    page.click("#save-draft")
    page.locator("#saved").wait_for()
    assert page.locator("#sage-toasts .sage-toast").count() == 0


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_traffic_import_error_is_scrolled_into_view_and_focused(page, live_server):
    from traffic.services import variant_get_or_create

    surface = traffic_surface("web-long")
    for i in range(30):  # a long overview pushes the import form far down the page
        variant_get_or_create(surface=surface, name=f"variant-{i}", role="treatment")
    UserFactory(username="andy", roles=["analyst"])
    browser_login(page, live_server, "andy", PASSWORD)
    page.goto(f"{live_server.url}/traffic/")
    page.select_option('#import select[name="surface"]', label=str(surface))
    page.set_input_files('#import input[name="file"]', files=[
        {"name": "bad.jsonl", "mimeType": "application/jsonl", "buffer": b'{"variant": "nope", "query": "q"}\n'}])
    page.click('#import button[type="submit"]')
    page.locator("#import-error").wait_for()
    assert page.evaluate("""() => {
        const box = document.getElementById('import-error').getBoundingClientRect();
        return box.top >= 0 && box.bottom <= window.innerHeight;
    }"""), "the import error is outside the viewport"
    assert page.evaluate("document.activeElement.id") == "import-error"
    assert page.evaluate("window.scrollY") > 500
    page.screenshot(path=str(ARTIFACTS / "errors-traffic-import-viewport.png"))  # what the analyst sees


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_missing_page_looks_like_sage(page, live_server):
    UserFactory(username="rita", roles=["reviewer"])
    browser_login(page, live_server, "rita", PASSWORD)
    response = page.goto(f"{live_server.url}/policies/999999/")
    assert response.status == 404
    assert page.locator("#error-page h1").inner_text() == "Not found"
    assert page.locator(".sage-header").is_visible()
    screenshot(page, "errors-404")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_analyst_on_triage_is_told_why_instead_of_a_form(page, live_server):
    from calibration.models import Disagreement
    from calibration.services import disagreements_refresh
    from tests.calibration.helpers import calibrated_run

    run, _items, _analyst = calibrated_run(judge_labels=[3, 0, 1, 2], human_labels=[[0, 0, 1, 2]])
    disagreements_refresh(run=run, min_distance=2)
    UserFactory(username="andy", roles=["analyst"])
    browser_login(page, live_server, "andy", PASSWORD)
    page.goto(f"{live_server.url}/calibration/triage/{Disagreement.objects.get().pk}/")
    assert page.locator("#triage-role-note").is_visible()
    assert page.locator("#resolve-form").count() == 0
    screenshot(page, "errors-triage-analyst")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_error_in_the_live_preview_does_not_take_focus_from_the_text(page, live_server):
    _editing(page, live_server)
    page.route("**/draft/preview/", lambda route: route.fulfill(
        status=200, content_type="text/html",
        body='<div id="preview" class="sage-preview"><p class="errorlist" role="alert" id="no-preview">No preview.</p></div>'))
    page.focus("#policy-text")
    page.keyboard.press("End")
    page.keyboard.type("more")
    page.locator("#no-preview").wait_for()
    page.keyboard.type(" and more")
    assert page.evaluate("document.activeElement.id") == "policy-text"
    assert page.locator("#policy-text").input_value().endswith("more and more")
