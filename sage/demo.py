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


# In the order of the loop: each step may rely on the ones before it. Each app owns its step.
DEMO_STEPS: list[str] = [
    "sage.demo.demo_users_load",
    "policy.demo.demo_policy_load",
    "traffic.demo.demo_traffic_load",
    "review.demo.demo_labels_load",
    "precedent.demo.demo_precedents_load",
    "judges.demo.demo_judges_load",
    "calibration.demo.demo_calibration_load",
    "distill.demo.demo_distill_load",
    "comparisons.demo.demo_comparisons_load",
]


def demo_load(*, log: Callable[[str], None] = lambda _: None) -> None:
    from django.utils.module_loading import import_string

    for path in DEMO_STEPS:
        for line in import_string(path)():
            log(line)
