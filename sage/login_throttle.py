"""Login throttling glue for django-axes: the backend, the client address and the lockout page.

Settings (sage/settings.py) say how many failures lock a username from one address and for how long.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_client_username, get_cool_off, get_failure_limit
from axes.models import AccessAttempt
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


class LoginThrottleBackend(AxesStandaloneBackend):
    """Refuses a locked-out username + address before any password is checked.

    Every login form (the app's and the admin's) passes its request. A call without one is code
    checking a password (the test client's login(), a management command), not a login over HTTP: there
    is no address to count failures by, so the check steps aside for ModelBackend instead of raising.
    """

    def authenticate(self, request: HttpRequest | None, username: str | None = None,
                     password: str | None = None, **kwargs: Any) -> None:
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def client_ip(request: HttpRequest) -> str | None:
    """The address failures are counted by: the connection's own, or, behind the proxy SAGE_HTTPS
    trusts, the header SAGE_CLIENT_IP_HEADER names (its last entry: the one our proxy added; earlier
    ones are whatever the client sent)."""
    header = settings.SAGE_CLIENT_IP_META
    if header:
        value = request.META.get(header, "")
        forwarded = [part.strip() for part in value.split(",") if part.strip()]
        if forwarded:
            return forwarded[-1]
    return request.META.get("REMOTE_ADDR")


def retry_at(request: HttpRequest, username: str) -> datetime | None:
    """When this username may log in again from this address: the cool-off after its last failure."""
    cool_off: timedelta | None = get_cool_off(request)
    if cool_off is None:
        return None
    last = (AccessAttempt.objects.filter(username=username, ip_address=client_ip(request))
            .order_by("-attempt_time").values_list("attempt_time", flat=True).first())
    return last + cool_off if last else None


def lockout_response(request: HttpRequest, original_response: HttpResponse | None = None,
                     credentials: dict | None = None) -> HttpResponse:
    """429 with a page that says why and when to retry (and a Retry-After header saying the same)."""
    from django.utils import timezone

    username = get_client_username(request, credentials) or ""
    until = retry_at(request, username)
    context = {
        "username": username,
        "failure_limit": get_failure_limit(request, credentials),
        "retry_at": until,
        "cool_off_minutes": round(get_cool_off(request).total_seconds() / 60) if get_cool_off(request) else None,
        "login_url": request.path,
    }
    response = render(request, "registration/lockout.html", context, status=429)
    if until:
        response["Retry-After"] = str(max(1, int((until - timezone.now()).total_seconds())))
    return response
