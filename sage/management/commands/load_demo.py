from django.core.management.base import BaseCommand

from sage.demo import DEMO_PASSWORD, DEMO_USERS, demo_load


class Command(BaseCommand):
    help = "Load the demo (users for each role and the TREC DL 2023 subset under demo/). Safe to re-run."

    def handle(self, *args, **options) -> None:
        demo_load(log=lambda line: self.stdout.write(f"  loaded {line}"))
        users = ", ".join(u.username for u in DEMO_USERS)
        self.stdout.write(self.style.SUCCESS(f"Demo ready. Log in as one of {users} with password {DEMO_PASSWORD!r}."))
