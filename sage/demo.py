"""The demo: users for each role plus whatever data the installed apps know how to load.

Each step is idempotent, so `./run demo` can be re-run on the same database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .roles import Role
from .services import user_upsert

DEMO_PASSWORD = "sage-demo"


@dataclass(frozen=True)
class DemoUser:
    username: str
    roles: tuple[Role, ...]


DEMO_USERS = (
    DemoUser("demo-admin", (Role.ADMIN, Role.REVIEWER, Role.ANALYST)),
    DemoUser("demo-reviewer", (Role.REVIEWER,)),
    DemoUser("demo-analyst", (Role.ANALYST,)),
)


def demo_users_load() -> list[str]:
    for demo_user in DEMO_USERS:
        user_upsert(username=demo_user.username, password=DEMO_PASSWORD, roles=demo_user.roles)
    return [f"{len(DEMO_USERS)} demo users ({', '.join(u.username for u in DEMO_USERS)})"]


# Later apps append their loaders (policy, traffic, labels, judge runs) in loop order.
DEMO_STEPS: list[Callable[[], list[str]]] = [demo_users_load]


def demo_load(*, log: Callable[[str], None] = lambda _: None) -> None:
    for step in DEMO_STEPS:
        for line in step():
            log(line)
