from __future__ import annotations

from precedent.models import Precedent
from precedent.services import PrecedentData, precedent_create
from tests.factories import UserFactory


def make_precedent(policy, *, query: str = "how long do fleas live", body: str = "Fleas live 30 to 90 days.",
                   labels: dict | None = None, accept: bool = True, clause: str = "", tags=None,
                   rationale: str = "States the answer.") -> Precedent:
    curator = UserFactory(username="curator", roles=["reviewer"])
    return precedent_create(policy=policy, user=curator, accept=accept, data=PrecedentData(
        query=query, body=body, labels=labels or {"relevance": 3}, rationale=rationale, clause=clause,
        tags=list(tags or []),
    ))
