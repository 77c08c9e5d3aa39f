from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from policy.models import Surface

from ...models import Scope, ScopedToken
from ...services import GateError, token_create, token_revoke


class Command(BaseCommand):
    help = ("Scoped API tokens for CI: `create OWNER --name N --scope gate:run [--scope traffic:import] "
            "[--surface SLUG] [--days 90]` prints the token once; `revoke PREFIX`; `list`.")

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a token and print it (once)")
        create.add_argument("owner", help="username of the analyst who owns it")
        create.add_argument("--name", required=True, help="what uses it, e.g. github-ci")
        create.add_argument("--scope", action="append", choices=Scope.values, required=True, dest="scopes")
        create.add_argument("--surface", help="limit it to this surface's slug")
        create.add_argument("--days", type=int, default=90, help="expires after this many days (0: never)")
        revoke = sub.add_parser("revoke", help="revoke a token by its prefix (sgt_…)")
        revoke.add_argument("prefix")
        lst = sub.add_parser("list", help="list tokens (never their secrets)")
        lst.add_argument("--owner")

    def handle(self, *args, action: str, **opts) -> None:
        getattr(self, f"_{action}")(**opts)

    def _create(self, *, owner: str, name: str, scopes: list[str], surface: str | None, days: int, **_) -> None:
        user = get_user_model().objects.filter(username=owner).first()
        if user is None:
            raise CommandError(f"No user {owner!r}; create one with `manage.py sage_user`.")
        limit = None
        if surface:
            limit = Surface.objects.filter(slug=surface).first()
            if limit is None:
                raise CommandError(f"No surface {surface!r}.")
        if days < 0:
            raise CommandError("--days is 0 (never expires) or more.")
        try:
            token, secret = token_create(owner=user, name=name, scopes=scopes, surface=limit, user=None,
                                         expires_at=timezone.now() + timedelta(days=days) if days else None)
        except GateError as exc:
            raise CommandError(str(exc)) from None
        expiry = f"expires {token.expires_at:%Y-%m-%d}" if token.expires_at else "never expires"
        # The secret alone on stdout (for `SAGE_TOKEN=$(manage.py gate_token create …)`), the rest on stderr.
        self.stderr.write(f"Token {token.name} ({token.prefix}) for {user}: {', '.join(token.scopes)}; {expiry}.")
        self.stdout.write(secret)

    def _revoke(self, *, prefix: str, **_) -> None:
        # The prefix as listed (sgt_0123abcd4567), or the whole token.
        token = ScopedToken.objects.filter(prefix="_".join(prefix.strip().split("_")[:2])).first()
        if token is None:
            raise CommandError(f"No token {prefix!r}; `manage.py gate_token list` shows them.")
        if token_revoke(token=token, user=None):
            self.stdout.write(f"Revoked {token}.")
        else:
            self.stdout.write(f"{token} was already revoked.")

    def _list(self, *, owner: str | None = None, **_) -> None:
        tokens = ScopedToken.objects.select_related("owner", "surface").order_by("-created_at")
        if owner:
            tokens = tokens.filter(owner__username=owner)
        for t in tokens:
            expiry = f"expires {t.expires_at:%Y-%m-%d}" if t.expires_at else "never expires"
            surface = t.surface.slug if t.surface else "*"
            self.stdout.write("\t".join([t.prefix, t.name, str(t.owner), ",".join(t.scopes), surface, t.state, expiry]))
