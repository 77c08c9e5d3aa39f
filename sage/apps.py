from typing import Any

from django.apps import AppConfig
from django.apps import apps as global_apps
from django.db.models.signals import post_migrate


def _ensure_role_groups(sender: AppConfig, *, using: str = "default", apps: Any = global_apps, **kwargs: Any) -> None:
    """The role groups after every migrate, not only the first: `flush` (and so every transactional
    test) empties auth_group and then sends post_migrate (without `apps`: then the installed ones),
    as Django's own permissions rely on."""
    from .roles import ensure_role_groups

    ensure_role_groups(using=using, group_model=apps.get_model("auth", "Group"))


class SageConfig(AppConfig):
    name = "sage"
    verbose_name = "SAGE system"

    def ready(self) -> None:
        post_migrate.connect(_ensure_role_groups, sender=self, dispatch_uid="sage.ensure_role_groups")
