"""`{% if user|has_role:"reviewer" %}`: templates show only what a role may do (same rule as the views)."""

from __future__ import annotations

from django import template
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from sage.roles import Role, has_role as _has_role

register = template.Library()


@register.filter
def has_role(user: AbstractBaseUser | AnonymousUser | None, roles: str) -> bool:
    """True when `user` holds any of the comma-separated `roles`; admins hold every role.

    An unknown role name raises, so a typo in a template fails loudly instead of hiding a button.
    """
    if user is None:
        return False
    return _has_role(user, *(Role(name.strip()) for name in roles.split(",") if name.strip()))
