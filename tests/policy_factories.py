"""Policies for tests: built through the real services, as a reviewer and an admin would."""

from __future__ import annotations

from policy.models import PolicyVersion
from policy.rubric import trec_relevance_dimension
from policy.services import policy_draft_start, policy_draft_update, policy_version_publish, surface_get_or_create
from tests.factories import UserFactory, published_version

POLICY_TEXT = """# Relevance

## Scope

Judge passages for web queries.

## Perfectly relevant (3)

Dedicated to the query, with the exact answer.

## Irrelevant (0)

Nothing to do with the query.
"""

FRESHNESS = {
    "key": "freshness", "name": "Freshness", "description": "Is the information current?",
    "levels": [{"value": 0, "label": "Stale", "definition": "Outdated."},
               {"value": 1, "label": "Fresh", "definition": "Current."}],
}


def rubric_json(*extra: dict) -> dict:
    return {"dimensions": [trec_relevance_dimension(), *extra]}


def publish_policy(*, slug: str = "relevance", text: str = POLICY_TEXT, rubric: dict | None = None) -> PolicyVersion:
    return published_version(surface_get_or_create(slug="web", name="Web search"), slug=slug, text=text,
                             rubric=rubric or rubric_json())


def publish_next(version: PolicyVersion, *, text: str | None = None, rubric: dict | None = None,
                 note: str = "next") -> PolicyVersion:
    admin = UserFactory(username="policy-admin", roles=["admin"])
    draft = policy_draft_start(policy=version.policy, user=admin)
    draft = policy_draft_update(draft=draft, user=admin, expected_lock_version=draft.lock_version,
                                text=text if text is not None else draft.text, rubric=rubric)
    return policy_version_publish(draft=draft, user=admin, change_note=note, expected_lock_version=draft.lock_version)
