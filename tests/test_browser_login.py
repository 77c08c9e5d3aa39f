"""Headless Chromium through the real login page, then a worker round trip from the System page."""

import pytest

from tests.conftest import browser_login, screenshot
from tests.factories import PASSWORD


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_reviewer_logs_in_through_the_login_page(page, live_server, make_user):
    make_user("reviewer", username="rita")
    page.goto(f"{live_server.url}/system/")
    assert "/accounts/login/" in page.url

    page.fill("#id_username", "rita")
    page.fill("#id_password", "wrong-password")
    page.click("button[type=submit]")
    assert page.locator(".errorlist").is_visible()

    page.fill("#id_username", "rita")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/system/")
    assert page.locator("summary", has_text="rita").is_visible()
    assert screenshot(page, "login-system").stat().st_size > 10_000


@pytest.mark.browser
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_system_page_pings_a_real_worker(page, live_server, make_user, celery_worker_process):
    make_user("admin", username="ada")
    browser_login(page, live_server, "ada", PASSWORD)
    page.goto(f"{live_server.url}/system/")
    page.click("#ping-button")
    page.locator("#ping-status", has_text="answered").wait_for(timeout=30_000)
    screenshot(page, "system-ping")
