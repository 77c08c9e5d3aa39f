from __future__ import annotations

from django.conf import settings
from django.db import models


class HeartbeatMixin:
    """`quiet_s` and `is_stalled` for a long task's row (a judge run, a student training): the model has
    `is_active` and `heartbeat_at`, and STALL_SETTING names the setting with its stall tolerance in seconds."""

    STALL_SETTING: str

    @property
    def quiet_s(self) -> float | None:
        """Seconds since the task last showed a sign of life, while it is active."""
        if not self.is_active or self.heartbeat_at is None:  # type: ignore[attr-defined]
            return None
        from django.utils import timezone

        return (timezone.now() - self.heartbeat_at).total_seconds()  # type: ignore[attr-defined]

    @property
    def is_stalled(self) -> bool:
        """Active without a heartbeat for longer than the stall sweep tolerates."""
        return (self.quiet_s or 0) > getattr(settings, self.STALL_SETTING)


class WorkerPing(models.Model):
    """A round trip through the broker to a worker, requested from the system page or a check.

    It proves that the web process, the broker and at least one worker are wired together, and
    measures how long a task waits in the queue.
    """

    requested_at = models.DateTimeField(auto_now_add=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    answered_at = models.DateTimeField(null=True, blank=True)
    worker_hostname = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-requested_at"]

    def __str__(self) -> str:
        return f"ping {self.pk} ({'answered' if self.answered_at else 'waiting'})"

    @property
    def round_trip_ms(self) -> float | None:
        if self.answered_at is None:
            return None
        return (self.answered_at - self.requested_at).total_seconds() * 1000


class ApiToken(models.Model):
    """A bearer token for the REST API (CI, scripts). Only a hash is stored; the key is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, help_text="the key's first characters, to tell tokens apart")
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
