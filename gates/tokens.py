"""Scoped bearer tokens: making them, checking them, and the decorator API views use.

A token reads `sgt_<public id>_<secret>`. The public id finds the row (a unique index, no scan); the
sha256 of the whole token is then compared in constant time. Errors follow sage.api's JSON shape —
`{"error": code, "message": …}` — with 401 when the token itself is no good (missing, unknown,
expired, revoked, its owner deactivated) and 403 when a good token may not do this (scope, surface,
its owner's role).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from policy.models import Surface
from sage.api import ApiError
from sage.roles import Role, has_role

from .models import ScopedToken

PREFIX = "sgt_"
_TOKEN = re.compile(r"sgt_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


def token_generate() -> tuple[str, str]:
    """A new (public prefix, full token) pair."""
    public = PREFIX + secrets.token_hex(6)
    return public, f"{public}_{secrets.token_urlsafe(32)}"


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def token_authenticate(raw: str) -> ScopedToken:
    """The live token `raw` spells, or ApiError(401) saying why not."""
    match = _TOKEN.fullmatch(raw.strip())
    if match is None:
        raise ApiError("Unknown API token (expected 'sgt_…'; create one under Gates → API tokens).", status=401,
                       code="unauthorized")
    token = ScopedToken.objects.select_related("owner").filter(prefix=PREFIX + match.group(1)).first()
    # Compare even when the row is missing, so timing does not tell which public ids exist.
    expected = token.secret_hash if token is not None else "0" * 64
    if not hmac.compare_digest(expected, token_hash(raw.strip())) or token is None:
        raise ApiError("Unknown API token.", status=401, code="unauthorized")
    if token.revoked_at is not None:
        raise ApiError(f"API token {token.prefix} was revoked on {token.revoked_at:%Y-%m-%d %H:%M} UTC.",
                       status=401, code="token_revoked")
    if token.is_expired:
        raise ApiError(f"API token {token.prefix} expired on {token.expires_at:%Y-%m-%d %H:%M} UTC.", status=401,
                       code="token_expired")
    if not token.owner.is_active:
        raise ApiError(f"The owner of API token {token.prefix} is deactivated.", status=401, code="unauthorized")
    ScopedToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token


def require_scope(token: ScopedToken, scope: str, *, doing: str) -> None:
    if not token.has_scope(scope):
        raise ApiError(f"API token {token.prefix} lacks the scope {scope!r}, needed to {doing}.", status=403,
                       code="insufficient_scope", details={"needed": scope, "held": list(token.scopes)})


def require_surface(token: ScopedToken, surface: Surface) -> None:
    if token.surface_id is not None and token.surface_id != surface.pk:
        raise ApiError(f"API token {token.prefix} is limited to another surface than {surface.slug!r}.", status=403,
                       code="wrong_surface")


def token_api(*, methods: tuple[str, ...], scopes: tuple[str, ...] = ()) -> Callable:
    """Token-only API views (CSRF-exempt: no cookie is ever read). The view gets `request.token`, and
    `request.user` is the token's owner; `scopes` are the ones every request needs (any of them).
    The owner must still be an analyst: a token never outlives its owner's role."""

    def decorator(view: Callable) -> Callable:
        @login_not_required
        @csrf_exempt
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            try:
                if request.method not in methods:
                    raise ApiError(f"Method {request.method} not allowed; use {', '.join(methods)}.", status=405,
                                   code="method_not_allowed")
                header = request.headers.get("Authorization", "")
                if not header.startswith("Bearer ") or not header.removeprefix("Bearer ").strip():
                    raise ApiError("Authentication required: send 'Authorization: Bearer <token>'.", status=401,
                                   code="unauthorized")
                token = token_authenticate(header.removeprefix("Bearer "))
                if scopes and not any(token.has_scope(s) for s in scopes):
                    require_scope(token, scopes[0], doing=f"call {request.method} {request.path}")
                if not has_role(token.owner, Role.ANALYST):
                    raise ApiError(f"The owner of API token {token.prefix} is no longer an analyst.", status=403,
                                   code="forbidden")
                request.token, request.user = token, token.owner
                return view(request, *args, **kwargs)
            except ApiError as exc:
                return exc.response()

        return wrapped

    return decorator
