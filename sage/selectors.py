"""Reads for the system page."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from .models import WorkerPing


@dataclass(frozen=True)
class SystemStatus:
    database_vendor: str
    database_name: str
    broker: str
    last_pings: list[WorkerPing]


def _redact_url(url: str) -> str:
    # Never show a broker password on a page.
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def system_status() -> SystemStatus:
    return SystemStatus(
        database_vendor=connection.vendor,
        database_name=str(connection.settings_dict["NAME"]),
        broker=_redact_url(settings.CELERY_BROKER_URL),
        last_pings=list(WorkerPing.objects.all()[:5]),
    )
