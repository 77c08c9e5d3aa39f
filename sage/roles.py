"""The three roles of SAGE, as Django groups, and the checks views use.

Reviewers label and edit policy drafts; analysts import traffic, run judges and compare variants;
admins publish policies and manage users. A superuser counts as every role.
"""

from __future__ import annotations

from enum import StrEnum

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group


class Role(StrEnum):
    REVIEWER = "reviewer"
    ANALYST = "analyst"
    ADMIN = "admin"


def ensure_role_groups() -> None:
    for role in Role:
        Group.objects.get_or_create(name=role.value)


def user_roles(user: AbstractBaseUser | AnonymousUser) -> set[Role]:
    if not user.is_authenticated:
        return set()
    if user.is_superuser:
        return set(Role)
    # Cache on the instance: templates and views ask several times per request.
    cached = getattr(user, "_sage_roles", None)
    if cached is None:
        names = set(user.groups.values_list("name", flat=True))
        cached = {role for role in Role if role.value in names}
        user._sage_roles = cached
    return cached


def has_role(user: AbstractBaseUser | AnonymousUser, *roles: Role) -> bool:
    """True when the user holds any of `roles` (admins implicitly hold every role)."""
    held = user_roles(user)
    return Role.ADMIN in held or any(role in held for role in roles)
