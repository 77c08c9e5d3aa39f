from __future__ import annotations

import getpass
import os

from django.core.management.base import BaseCommand, CommandError

from sage.roles import Role
from sage.services import user_upsert


class Command(BaseCommand):
    help = (
        "Create or update a SAGE user with roles (reviewer, analyst, admin). The password comes from "
        "--password-env (the name of an environment variable) or an interactive prompt."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--role", action="append", choices=[r.value for r in Role], default=[], dest="roles",
            help="a role to grant; repeat for several (replaces the user's roles)",
        )
        parser.add_argument("--email", default="")
        parser.add_argument("--password-env", help="read the password from this environment variable")
        parser.add_argument("--superuser", action="store_true", help="grant Django superuser (all roles)")
        parser.add_argument("--no-password", action="store_true", help="leave the password unchanged/unusable")

    def handle(self, *args, username: str, roles: list[str], email: str, password_env: str | None,
               superuser: bool, no_password: bool, **options) -> None:
        if not roles and not superuser:
            raise CommandError("Give at least one --role (reviewer, analyst, admin) or --superuser.")
        password: str | None
        if no_password:
            password = None
        elif password_env:
            password = os.environ.get(password_env)
            if not password:
                raise CommandError(f"Environment variable {password_env} is empty or not set.")
        else:
            password = getpass.getpass(f"Password for {username}: ")
            if not password:
                raise CommandError("Empty password.")
        user, created = user_upsert(
            username=username, password=password, roles=[Role(r) for r in roles], email=email, superuser=superuser
        )
        verb = "Created" if created else "Updated"
        self.stdout.write(self.style.SUCCESS(f"{verb} user {user.username} with roles: {', '.join(roles) or 'all'}"))
