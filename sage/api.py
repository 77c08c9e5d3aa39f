"""The REST API's plumbing: bearer-token authentication and JSON errors.

Views decorated with `@api_view(...)` accept either a logged-in session (the browser) or an
`Authorization: Bearer sage_…` header (CI, scripts), skip CSRF only for token requests, and turn
`ApiError` into a JSON body with a stable `error` code.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from .roles import Role, has_role


class ApiError(Exception):
    def __init__(self, message: str, *, status: int = 400, code: str = "bad_request", details=None) -> None:
        super().__init__(message)
        self.status, self.code, self.details = status, code, details

    def response(self) -> JsonResponse:
        """The error as every API answers it: {"error", "message", "details"?} with its status."""
        body = {"error": self.code, "message": str(self)}
        if self.details is not None:
            body["details"] = self.details
        return JsonResponse(body, status=self.status)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _token_user(request: HttpRequest):
    from .models import ApiToken

    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    key = header.removeprefix("Bearer ").strip()
    token = ApiToken.objects.select_related("user").filter(key_hash=hash_key(key), revoked_at__isnull=True).first()
    if token is None or not token.user.is_active:
        raise ApiError("Invalid or revoked API token.", status=401, code="unauthorized")
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token.user


def api_view(*, methods: tuple[str, ...], roles: tuple[Role, ...] = ()) -> Callable:
    def decorator(view: Callable) -> Callable:
        @login_not_required
        @csrf_exempt
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            try:
                if request.method not in methods:
                    raise ApiError(f"Method {request.method} not allowed; use {', '.join(methods)}.", status=405,
                                   code="method_not_allowed")
                user = _token_user(request)
                if user is not None:
                    request.user = user
                elif request.user.is_authenticated:
                    # A browser session: CSRF applies as on any other form post.
                    reason = CsrfViewMiddleware(lambda r: None).process_view(request, None, (), {})
                    if reason is not None:
                        raise ApiError("CSRF check failed.", status=403, code="csrf")
                else:
                    raise ApiError("Authentication required: send 'Authorization: Bearer <token>'.", status=401,
                                   code="unauthorized")
                if roles and not has_role(request.user, *roles):
                    raise ApiError(f"This needs the role: {' or '.join(r.value for r in roles)}.", status=403,
                                   code="forbidden")
                return view(request, *args, **kwargs)
            except ApiError as exc:
                return exc.response()
            except RequestDataTooBig:
                # Django's own answer is the HTML 400 page; an API client reads JSON.
                limit_mb = settings.DATA_UPLOAD_MAX_MEMORY_SIZE // (1024 * 1024)
                return ApiError(f"The request body is larger than this server accepts ({limit_mb} MB, "
                                "SAGE_MAX_FORM_MB); nothing was saved. Send large data as a file upload.",
                                status=413, code="too_large").response()

        return wrapped

    return decorator
