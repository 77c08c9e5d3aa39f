"""An analyst makes a CI token in the browser, copies it once, uses it, and revokes it; a form without a
scope is refused with the reason; a reviewer finds a sentence instead of the form."""

import pytest

from gates.models import ScopedToken
from tests.conftest import browser_login, screenshot
from tests.factories import PASSWORD, UserFactory, traffic_surface


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_analyst_creates_uses_and_revokes_a_token(page, live_server, client):
    analyst = UserFactory(username="andy", roles=["analyst"])
    traffic_surface("browser-gates")
    browser_login(page, live_server, analyst.username, PASSWORD)
    page.goto(f"{live_server.url}/gates/tokens/")
    form = page.locator("#token-form")

    # Refused: no scope chosen. The name typed stays.
    form.locator("input[name=name]").fill("github-ci")
    for box in form.locator("input[name=scopes]").all():
        box.uncheck()
    form.locator("button[type=submit]").click()
    page.wait_for_selector("#token-form .errorlist")
    assert page.locator("#token-form input[name=name]").input_value() == "github-ci"
    screenshot(page, "gates-token-refused")
    assert not ScopedToken.objects.exists()

    form = page.locator("#token-form")
    form.locator("input[value='gate:run']").check()
    form.locator("input[value='traffic:import']").check()
    form.locator("select[name=surface]").select_option(label="Surface browser-gates")
    form.locator("button[type=submit]").click()
    secret = page.locator("#token-secret").inner_text().strip()
    token = ScopedToken.objects.get(name="github-ci")
    assert secret.startswith(token.prefix) and "not shown again" in page.locator("#token-secret-box").inner_text()
    screenshot(page, "gates-token-created")

    # It works once, from CI's side (the API reads it), and the page never shows it again.
    response = client.get("/api/gates/none/runs/1", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 404 and response.json()["error"] == "unknown_gate"
    page.goto(f"{live_server.url}/gates/tokens/")
    assert secret not in page.content() and token.prefix in page.content()

    page.locator(f"#token-{token.pk} button", has_text="Revoke").click()
    page.wait_for_selector(f"#token-{token.pk} .sage-badge-bad")
    assert "revoked" in page.locator(f"#token-{token.pk}").inner_text()
    screenshot(page, "gates-token-revoked")
    response = client.get("/api/gates/none/runs/1", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 401 and response.json()["error"] == "token_revoked"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_reviewer_gets_a_sentence_not_a_token_form(page, live_server):
    reviewer = UserFactory(username="rita", roles=["reviewer"])
    browser_login(page, live_server, reviewer.username, PASSWORD)
    page.goto(f"{live_server.url}/gates/tokens/")
    assert page.locator("#tokens-role-note").is_visible() and page.locator("#token-form").count() == 0
    screenshot(page, "gates-token-reviewer")
