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


def ensure_role_groups(*, using: str = "default", group_model: type[Group] = Group) -> None:
    """A group per role. `group_model` and `using`: a migration's or migrate signal's own."""
    for role in Role:
        group_model.objects.using(using).get_or_create(name=role.value)


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


class AdminRolePermissionBackend:
    """Django's admin site for the admin role: every model permission, from the role.

    Admins "publish policies and manage users" (the role's promise), and `user_upsert` makes them
    staff, but Django's admin also asks for a permission row per model and action, which nobody
    grants and which new models would lack: a non-superuser admin met "You don't have permission to
    view or edit anything". This backend answers from the role instead; the ModelAdmins still refuse
    what nobody may do (editing a published policy version, a label revision, a student model).
    It authenticates no one (the other backends do that)."""

    def authenticate(self, request, **credentials):  # noqa: ARG002 - the backend API
        return None

    def get_user(self, user_id):  # noqa: ARG002
        return None

    def has_perm(self, user_obj, perm, obj=None) -> bool:  # noqa: ARG002
        return bool(user_obj.is_active and user_obj.is_staff and Role.ADMIN in user_roles(user_obj))

    def has_module_perms(self, user_obj, app_label) -> bool:  # noqa: ARG002
        return self.has_perm(user_obj, f"{app_label}.*")

