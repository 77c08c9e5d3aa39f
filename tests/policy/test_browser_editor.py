"""A reviewer-admin edits a draft in headless Chromium: live preview, the diff, then publish."""

import pytest

from policy.models import PolicyVersion
from tests.conftest import browser_login, screenshot
from tests.factories import PASSWORD
from tests.policy_factories import publish_policy


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_admin_edits_previews_diffs_and_publishes(page, live_server, make_user):
    v1 = publish_policy()
    make_user("admin", username="ada")
    browser_login(page, live_server, "ada", PASSWORD)

    page.goto(f"{live_server.url}/policies/{v1.policy_id}/")
    page.click("text=Start a new draft from v1")
    page.wait_for_url(f"**/policies/{v1.policy_id}/draft/")

    page.fill("#policy-text", v1.text + "\n## Freshness\n\nPrefer current facts.\n")
    page.locator("#preview h2#clause-freshness").wait_for()

    page.click("#add-dimension")
    page.locator('input[name="dim-1-key"]').wait_for()
    page.fill('input[name="dim-1-key"]', "freshness")
    page.fill('input[name="dim-1-name"]', "Freshness")
    page.fill('input[name="dim-1-description"]', "Is it current?")
    for j, (label, definition) in enumerate([("Stale", "Outdated."), ("Fresh", "Current.")]):
        page.fill(f'input[name="dim-1-level-{j}-label"]', label)
        page.fill(f'input[name="dim-1-level-{j}-definition"]', definition)
    page.click("#save-draft")
    page.locator("#saved").wait_for()
    screenshot(page, "policy-draft-editor")

    page.click("#diff-link")
    page.locator("#diff-side-by-side").wait_for()
    assert page.locator(".sage-rubric-added", has_text="freshness").is_visible()
    screenshot(page, "policy-diff")
    page.go_back()

    page.click("#publish-toggle")
    page.fill('#publish-form input[name="change_note"]', "Add freshness")
    page.check("#publish-confirm")
    page.click("#publish-button")
    page.wait_for_url(f"**/policies/{v1.policy_id}/")
    assert page.locator(".sage-message-success", has_text="Published v2").is_visible()
    v2 = PolicyVersion.objects.get(policy=v1.policy, number=2)
    assert v2.parsed_rubric().keys == ["relevance", "freshness"]
    assert v2.clauses.filter(anchor="freshness").exists()
