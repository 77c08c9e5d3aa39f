from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from sage.services import api_token_create


class Command(BaseCommand):
    help = "Create an API token for a user (for CI or scripts); prints the key once."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="cli", help="what the token is for, e.g. 'ci'")

    def handle(self, *args, username: str, name: str, **options) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}; create one with `manage.py sage_user`.")
        _, key = api_token_create(user=user, name=name)
        self.stdout.write(key)
