"""Login throttling (django-axes): failures for one username from one address lock that pair out, on the
app's login and the admin's, with a page that says when to retry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.test import Client

from tests.conftest import screenshot
from tests.factories import PASSWORD

APP_LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture(autouse=True)
def throttle(settings):
    settings.AXES_FAILURE_LIMIT = 5
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    settings.SAGE_CLIENT_IP_META = ""


def _fail(client: Client, url: str, username: str, times: int, **extra):
    response = None
    for _ in range(times):
        response = client.post(url, {"username": username, "password": "wrong-password"}, **extra)
    return response


@pytest.mark.django_db
@pytest.mark.parametrize("url", [APP_LOGIN, ADMIN_LOGIN], ids=["app", "admin"])
def test_five_failures_lock_the_login_even_against_the_right_password(client, make_user, url):
    make_user("admin", username="ada", is_staff=True, is_superuser=True)
    fourth = _fail(client, url, "ada", 4)
    assert fourth.status_code == 200  # still the login form, with its error
    fifth = _fail(client, url, "ada", 1)
    assert fifth.status_code == 429

    response = client.post(url, {"username": "ada", "password": PASSWORD})
    html = response.content.decode()
    assert response.status_code == 429
    assert 'id="lockout"' in html and "Too many failed logins" in html and "Try again after" in html
    assert "axes_reset_username ada" in html
    assert 0 < int(response["Retry-After"]) <= 15 * 60
    assert "_auth_user_id" not in client.session
    # The refused right password did not restart the cool-off the page named.
    assert AccessAttempt.objects.get(username="ada").failures_since_start == 5


@pytest.mark.django_db
def test_the_lock_ends_when_the_cool_off_has_passed(client, reviewer):
    _fail(client, APP_LOGIN, "rita", 5)
    assert client.post(APP_LOGIN, {"username": "rita", "password": PASSWORD}).status_code == 429
    AccessAttempt.objects.update(attempt_time=AccessAttempt.objects.get().attempt_time - timedelta(minutes=15, seconds=1))
    response = client.post(APP_LOGIN, {"username": "rita", "password": PASSWORD})
    assert response.status_code == 302 and client.session["_auth_user_id"] == str(reviewer.pk)


@pytest.mark.django_db
def test_a_success_resets_the_count(client, reviewer):
    _fail(client, APP_LOGIN, "rita", 4)
    assert client.post(APP_LOGIN, {"username": "rita", "password": PASSWORD}).status_code == 302
    assert not AccessAttempt.objects.exists()
    client.post("/accounts/logout/")
    assert _fail(client, APP_LOGIN, "rita", 4).status_code == 200
    assert client.post(APP_LOGIN, {"username": "rita", "password": PASSWORD}).status_code == 302


@pytest.mark.django_db
def test_the_lock_is_per_username_and_address(client, make_user):
    make_user("reviewer", username="rita")
    make_user("reviewer", username="rob")
    _fail(client, APP_LOGIN, "rita", 5)
    # The same user from another address, and another user from this one, still log in.
    other = Client(REMOTE_ADDR="10.0.0.9")
    assert other.post(APP_LOGIN, {"username": "rita", "password": PASSWORD}).status_code == 302
    assert Client().post(APP_LOGIN, {"username": "rob", "password": PASSWORD}).status_code == 302


@pytest.mark.django_db
def test_the_forwarded_address_counts_only_when_the_proxy_header_is_configured(client, reviewer, settings):
    # Without SAGE_CLIENT_IP_HEADER a client's own X-Forwarded-For is ignored: rotating it does not help.
    for n in range(5):
        client.post(APP_LOGIN, {"username": "rita", "password": "wrong"}, HTTP_X_FORWARDED_FOR=f"10.1.0.{n}")
    assert client.post(APP_LOGIN, {"username": "rita", "password": PASSWORD},
                       HTTP_X_FORWARDED_FOR="10.1.0.99").status_code == 429

    # Behind the proxy (SAGE_HTTPS + SAGE_CLIENT_IP_HEADER=X-Forwarded-For) the proxy's last entry counts.
    settings.SAGE_CLIENT_IP_META = "HTTP_X_FORWARDED_FOR"
    proxied = Client(REMOTE_ADDR="10.9.9.9")
    _fail(proxied, APP_LOGIN, "rita", 5, HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7")
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"127.0.0.1", "203.0.113.7"}
    assert proxied.post(APP_LOGIN, {"username": "rita", "password": PASSWORD},
                        HTTP_X_FORWARDED_FOR="203.0.113.8").status_code == 302


@pytest.mark.django_db
def test_an_admin_lifts_a_lockout_with_the_management_command(client, reviewer):
    _fail(client, APP_LOGIN, "rita", 5)
    call_command("axes_reset_username", "rita")
    assert client.post(APP_LOGIN, {"username": "rita", "password": PASSWORD}).status_code == 302


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_lockout_page_in_a_browser(page, live_server, make_user):
    make_user("reviewer", username="rita")
    for _ in range(5):
        page.goto(f"{live_server.url}{APP_LOGIN}")
        page.fill("#id_username", "rita")
        page.fill("#id_password", "wrong-password")
        page.click("main button[type=submit]")
    page.goto(f"{live_server.url}{APP_LOGIN}")
    page.fill("#id_username", "rita")
    page.fill("#id_password", PASSWORD)
    page.click("main button[type=submit]")
    page.locator("#lockout").wait_for()
    assert "Try again after" in page.locator("#lockout").inner_text()
    assert screenshot(page, "login-lockout").stat().st_size > 10_000
