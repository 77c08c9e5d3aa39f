"""HTTPS, cookie, header and session settings as deployments see them (fresh interpreters with a chosen
environment), and as the embedded demo serves them over plain http."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest
from django.test import RequestFactory
from django.views.defaults import server_error

from tests.factories import PASSWORD
from tests.test_settings import production_env, run_python

PROBE = (
    "import json, django; from django.conf import settings; django.setup();"
    "names = ['SECURE_SSL_REDIRECT', 'SECURE_HSTS_SECONDS', 'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SECURE_HSTS_PRELOAD',"
    " 'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SESSION_COOKIE_HTTPONLY', 'SECURE_PROXY_SSL_HEADER',"
    " 'SECURE_CONTENT_TYPE_NOSNIFF', 'SECURE_REFERRER_POLICY', 'X_FRAME_OPTIONS', 'SESSION_COOKIE_AGE',"
    " 'SESSION_EXPIRE_AT_BROWSER_CLOSE', 'AXES_FAILURE_LIMIT', 'AXES_COOLOFF_TIME', 'SAGE_CLIENT_IP_META'];"
    "print(json.dumps({n: getattr(settings, n) for n in names}, default=str))"
)


def probe(env: dict[str, str]) -> dict:
    result = run_python(["-c", PROBE], {"DJANGO_SETTINGS_MODULE": "sage.settings", **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_check_deploy_passes_at_warning_level_under_sage_https(tmp_path):
    result = run_python(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues (0 silenced)" in result.stdout


def test_sage_https_turns_on_redirect_hsts_and_secure_cookies(tmp_path):
    config = probe(production_env(tmp_path))
    assert config["SECURE_SSL_REDIRECT"] is True
    assert config["SECURE_HSTS_SECONDS"] == 31_536_000
    assert config["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True and config["SECURE_HSTS_PRELOAD"] is True
    assert config["SESSION_COOKIE_SECURE"] is True and config["CSRF_COOKIE_SECURE"] is True
    assert config["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_the_proxy_headers_are_configurable_and_trusted_only_under_https(tmp_path):
    env = {"SAGE_DATA_DIR": str(tmp_path), "SAGE_PROXY_SSL_HEADER": "X-Scheme", "SAGE_CLIENT_IP_HEADER": "X-Real-IP"}
    assert probe(env | {"SAGE_HTTPS": "true"})["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_SCHEME", "https"]
    assert probe(env | {"SAGE_HTTPS": "true"})["SAGE_CLIENT_IP_META"] == "HTTP_X_REAL_IP"
    plain = probe(env)
    assert plain["SECURE_PROXY_SSL_HEADER"] is None and plain["SAGE_CLIENT_IP_META"] == ""
    # gunicorn terminating TLS itself: no proxy header is trusted.
    assert probe(env | {"SAGE_HTTPS": "true", "SAGE_PROXY_SSL_HEADER": ""})["SECURE_PROXY_SSL_HEADER"] is None


def test_without_sage_https_the_embedded_default_keeps_plain_http_cookies(tmp_path):
    config = probe({"SAGE_DATA_DIR": str(tmp_path)})
    assert config["SECURE_SSL_REDIRECT"] is False and config["SECURE_HSTS_SECONDS"] == 0
    assert config["SESSION_COOKIE_SECURE"] is False and config["CSRF_COOKIE_SECURE"] is False
    # Always on, whatever the scheme.
    assert config["SESSION_COOKIE_HTTPONLY"] is True and config["SECURE_CONTENT_TYPE_NOSNIFF"] is True
    assert config["SECURE_REFERRER_POLICY"] == "same-origin" and config["X_FRAME_OPTIONS"] == "DENY"


def test_session_lifetime_and_login_throttle_come_from_the_environment(tmp_path):
    defaults = probe({"SAGE_DATA_DIR": str(tmp_path)})
    assert defaults["SESSION_COOKIE_AGE"] == 14 * 24 * 3600 and defaults["SESSION_EXPIRE_AT_BROWSER_CLOSE"] is False
    assert defaults["AXES_FAILURE_LIMIT"] == 5 and defaults["AXES_COOLOFF_TIME"] == 0.25  # hours: 15 minutes
    chosen = probe({"SAGE_DATA_DIR": str(tmp_path), "SAGE_SESSION_AGE_HOURS": "8",
                    "SAGE_SESSION_EXPIRE_AT_BROWSER_CLOSE": "true", "SAGE_LOGIN_FAILURE_LIMIT": "3",
                    "SAGE_LOGIN_COOLOFF_MINUTES": "90"})
    assert chosen["SESSION_COOKIE_AGE"] == 8 * 3600 and chosen["SESSION_EXPIRE_AT_BROWSER_CLOSE"] is True
    assert chosen["AXES_FAILURE_LIMIT"] == 3 and chosen["AXES_COOLOFF_TIME"] == 1.5
    bad = run_python(["-c", PROBE], {"DJANGO_SETTINGS_MODULE": "sage.settings", "SAGE_DATA_DIR": str(tmp_path),
                                     "SAGE_SESSION_AGE_HOURS": "0"})
    assert bad.returncode != 0 and "SAGE_SESSION_AGE_HOURS=0 must be at least 1" in bad.stderr


@pytest.mark.django_db
def test_the_demo_over_http_sends_the_headers_and_a_usable_session_cookie(client, reviewer):
    page = client.get("/accounts/login/")
    assert page["X-Content-Type-Options"] == "nosniff"
    assert page["Referrer-Policy"] == "same-origin"
    assert page["X-Frame-Options"] == "DENY"
    assert "Strict-Transport-Security" not in page
    response = client.post("/accounts/login/", {"username": "rita", "password": PASSWORD})
    assert response.status_code == 302  # no redirect to https://
    cookie = response.cookies["sessionid"]
    assert cookie["httponly"] and not cookie["secure"]
    assert client.get("/").status_code == 200


def test_the_standalone_error_pages_inline_style_is_allowed_by_its_hash(settings):
    html = server_error(RequestFactory().get("/x/")).content.decode()
    blocks = re.findall(r"<style>(.*?)</style>", html, re.S)
    assert blocks and "style=" not in html and "javascript:" not in html
    allowed = settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]["style-src"]
    for block in blocks:
        assert f"'sha256-{base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()}'" in allowed
