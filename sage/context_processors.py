from __future__ import annotations

from django.http import HttpRequest

from .navigation import nav_items
from .roles import user_roles


def navigation(request: HttpRequest) -> dict:
    return {
        "nav_items": nav_items(request),
        "user_roles": sorted(role.value for role in user_roles(request.user)),
    }
