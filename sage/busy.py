"""A database that is busy right now answers 503 with Retry-After, never 500.

SQLite (the embedded default) has one writer at a time. Writers queue on its busy timeout
(settings: IMMEDIATE transactions, `timeout`), and long writers such as traffic imports take turns
on a lock of their own (`traffic.services`); a request that still waits longer than that gets
"database is locked". That is no bug in the request: it is worth repeating a moment later, which
is what 503 with Retry-After tells browsers, scripts and CI clients.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

RETRY_AFTER_SECONDS = 10


class Busy(Exception):
    """Raised by a service that gave up waiting for its turn to write; the message is shown as is."""

    def __init__(self, message: str, *, retry_after: int = RETRY_AFTER_SECONDS) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def is_database_busy(exc: BaseException) -> bool:
    return isinstance(exc, Busy) or (isinstance(exc, OperationalError) and "database is locked" in str(exc))


def busy_response(request: HttpRequest, exc: BaseException) -> HttpResponse:
    retry_after = exc.retry_after if isinstance(exc, Busy) else RETRY_AFTER_SECONDS
    message = str(exc) if isinstance(exc, Busy) else (
        "The database is busy with another write (an import, most likely); nothing was changed. "
        f"Try again in {retry_after} seconds.")
    if "/api/" in request.path:
        response: HttpResponse = JsonResponse({"error": "busy", "message": message}, status=503)
    else:
        response = HttpResponse(message, status=503, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(retry_after)
    return response


class DatabaseBusyMiddleware:
    """Turns a busy database (see the module docstring) into 503 + Retry-After."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return busy_response(request, exception) if is_database_busy(exception) else None
