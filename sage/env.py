"""Typed readers for settings that come from the environment.

Every reader fails loudly (ImproperlyConfigured naming the variable and the bad value) rather than
silently falling back, so a typo in a deployment's env file stops the process at start-up instead
of running with a surprising default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Env:
    """Reads typed values from a mapping (os.environ by default, a dict in tests)."""

    def __init__(self, source: Mapping[str, str] | None = None) -> None:
        self.source = os.environ if source is None else source

    def is_set(self, name: str) -> bool:
        return name in self.source

    def str(self, name: str, default: str | None = None) -> str:
        value = self.source.get(name)
        if value is None:
            if default is None:
                raise ImproperlyConfigured(f"Environment variable {name} is required but not set.")
            return default
        return value

    def bool(self, name: str, default: bool) -> bool:
        raw = self.source.get(name)
        if raw is None:
            return default
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ImproperlyConfigured(
            f"Environment variable {name}={raw!r} is not a boolean (use one of: 1/0, true/false, yes/no, on/off)."
        )

    def int(self, name: str, default: int, *, minimum: int | None = None) -> int:
        raw = self.source.get(name)
        if raw is None:
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            raise ImproperlyConfigured(f"Environment variable {name}={raw!r} is not an integer.") from None
        if minimum is not None and value < minimum:
            raise ImproperlyConfigured(f"Environment variable {name}={value} must be at least {minimum}.")
        return value

    def float(self, name: str, default: float, *, minimum: float | None = None) -> float:
        raw = self.source.get(name)
        if raw is None:
            return default
        try:
            value = float(raw.strip())
        except ValueError:
            raise ImproperlyConfigured(f"Environment variable {name}={raw!r} is not a number.") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ImproperlyConfigured(f"Environment variable {name}={raw!r} is not a finite number.")
        if minimum is not None and value < minimum:
            raise ImproperlyConfigured(f"Environment variable {name}={value} must be at least {minimum}.")
        return value

    def list(self, name: str, default: list[str]) -> list[str]:
        raw = self.source.get(name)
        if raw is None:
            return list(default)
        items = [part.strip() for part in raw.split(",") if part.strip()]
        if not items:
            raise ImproperlyConfigured(f"Environment variable {name} is set but lists no values.")
        return items

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.str(name, default)
        if value not in choices:
            raise ImproperlyConfigured(
                f"Environment variable {name}={value!r} must be one of: {', '.join(choices)}."
            )
        return value

    def database(self, name: str, default: str) -> dict:
        import dj_database_url

        url = self.str(name, default)
        scheme = url.split(":", 1)[0]
        if scheme not in {"postgres", "postgresql", "pgsql", "sqlite"}:
            raise ImproperlyConfigured(
                f"Environment variable {name} uses unsupported scheme {scheme!r}: use postgres:// or sqlite:///."
            )
        try:
            return dj_database_url.parse(url, conn_max_age=60 if scheme != "sqlite" else 0)
        except ValueError as exc:
            raise ImproperlyConfigured(f"Environment variable {name} is not a valid database URL: {exc}") from None
