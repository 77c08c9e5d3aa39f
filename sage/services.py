"""Writes of the `sage` app: worker pings and user accounts."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group
from django.db import transaction
from django.utils import timezone

from .models import ApiToken, WorkerPing
from .roles import Role, ensure_role_groups


def worker_ping_request(*, requested_by: AbstractUser | None = None) -> WorkerPing:
    from .tasks import worker_ping_answer_task

    ping = WorkerPing.objects.create(requested_by=requested_by)
    # Queue only once the row is committed, so the worker can never look for a ping it can't see.
    transaction.on_commit(lambda: worker_ping_answer_task.delay(ping.pk))
    return ping


def worker_ping_answer(*, ping_id: int, hostname: str) -> bool:
    """Record the answer; a redelivered task finds the ping answered and changes nothing."""
    changed = WorkerPing.objects.filter(pk=ping_id, answered_at__isnull=True).update(
        answered_at=timezone.now(), worker_hostname=hostname[:255]
    )
    return changed == 1


def user_upsert(
    *,
    username: str,
    password: str | None,
    roles: Iterable[Role],
    email: str = "",
    superuser: bool = False,
) -> tuple[AbstractUser, bool]:
    """Create the user or update an existing one; roles given replace the user's roles."""
    ensure_role_groups()
    User = get_user_model()
    with transaction.atomic():
        user, created = User.objects.get_or_create(username=username, defaults={"email": email})
        if email:
            user.email = email
        if password is not None:
            user.set_password(password)
        elif created:
            user.set_unusable_password()
        user.is_staff = superuser or Role.ADMIN in set(roles)
        user.is_superuser = superuser
        user.save()
        user.groups.set(Group.objects.filter(name__in=[Role(r).value for r in roles]))
    return user, created


def api_token_create(*, user: AbstractUser, name: str) -> tuple[ApiToken, str]:
    """Returns the token row and the plain key, which is never stored and cannot be shown again."""
    import secrets

    from .api import hash_key

    key = "sage_" + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name[:100], prefix=key[:12], key_hash=hash_key(key))
    return token, key


def api_token_revoke(*, token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
