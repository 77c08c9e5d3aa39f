"""Every logged-in user changes their own password from the user menu; the session stays logged in."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.conftest import browser_login, screenshot
from tests.factories import PASSWORD

NEW_PASSWORD = "a-new-and-longer-passphrase-42"


@pytest.mark.django_db
def test_the_user_menu_links_to_the_page(client, reviewer):
    client.force_login(reviewer)
    assert 'href="/accounts/password/"' in client.get("/").content.decode()
    assert client.get("/accounts/password/").status_code == 200


@pytest.mark.django_db
def test_anonymous_users_are_sent_to_log_in(client):
    response = client.get("/accounts/password/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


@pytest.mark.django_db
def test_a_wrong_old_password_is_refused_and_changes_nothing(client, reviewer):
    client.force_login(reviewer)
    response = client.post("/accounts/password/", {"old_password": "not-it", "new_password1": NEW_PASSWORD,
                                                   "new_password2": NEW_PASSWORD})
    html = response.content.decode()
    assert response.status_code == 200
    assert "Your old password was entered incorrectly" in html and 'aria-invalid="true"' in html
    reviewer.refresh_from_db()
    assert reviewer.check_password(PASSWORD) and not reviewer.check_password(NEW_PASSWORD)


@pytest.mark.django_db
def test_a_weak_or_mismatched_new_password_is_refused(client, reviewer):
    client.force_login(reviewer)
    weak = client.post("/accounts/password/", {"old_password": PASSWORD, "new_password1": "12345678",
                                               "new_password2": "12345678"}).content.decode()
    assert "too common" in weak or "entirely numeric" in weak
    mismatch = client.post("/accounts/password/", {"old_password": PASSWORD, "new_password1": NEW_PASSWORD,
                                                   "new_password2": NEW_PASSWORD + "x"}).content.decode()
    assert "didn’t match" in mismatch or "didn't match" in mismatch
    reviewer.refresh_from_db()
    assert reviewer.check_password(PASSWORD)


@pytest.mark.django_db
def test_a_change_keeps_this_session_and_the_new_password_logs_in(client, reviewer):
    client.force_login(reviewer)
    response = client.post("/accounts/password/", {"old_password": PASSWORD, "new_password1": NEW_PASSWORD,
                                                   "new_password2": NEW_PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/accounts/password/done/"
    assert "Your password is changed" in client.get("/accounts/password/done/").content.decode()
    assert client.get("/").status_code == 200  # still logged in here

    fresh = Client()
    assert fresh.post("/accounts/login/", {"username": "rita", "password": PASSWORD}).status_code == 200
    assert fresh.post("/accounts/login/", {"username": "rita", "password": NEW_PASSWORD}).status_code == 302


@pytest.mark.django_db
def test_other_sessions_of_the_user_end(reviewer):
    elsewhere, here = Client(), Client()
    elsewhere.force_login(reviewer)
    here.force_login(reviewer)
    here.post("/accounts/password/", {"old_password": PASSWORD, "new_password1": NEW_PASSWORD,
                                      "new_password2": NEW_PASSWORD})
    assert elsewhere.get("/").status_code == 302  # its session hash no longer matches


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_page_in_a_browser_shows_the_error(page, live_server, make_user):
    make_user("reviewer", username="rita")
    browser_login(page, live_server, "rita", PASSWORD)
    page.click("summary:has-text('rita')")
    page.click("text=Change password")
    page.wait_for_url(f"{live_server.url}/accounts/password/")
    page.fill("#id_old_password", "not-it")
    page.fill("#id_new_password1", NEW_PASSWORD)
    page.fill("#id_new_password2", NEW_PASSWORD)
    page.click("main button[type=submit]")
    error = page.locator("#id_old_password-errors")
    error.wait_for()
    assert "incorrectly" in error.inner_text()
    assert page.evaluate("document.activeElement.id") in {"id_old_password", "id_old_password-errors"}
    assert screenshot(page, "password-change-error").stat().st_size > 10_000
