"""The demo policy: the TREC Deep Learning passage relevance guidelines as v1, and a v2 that adds
two dimensions a search team cares about (answer completeness, source quality)."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from .models import Policy, PolicyVersion
from .rubric import trec_relevance_dimension
from .services import policy_create, policy_draft_update, policy_version_publish, surface_get_or_create

SURFACE_SLUG = "web-passages"
POLICY_SLUG = "relevance"

V1_TEXT = """# Web passage relevance

Judge how well a **passage** returned by web search answers the **query**. Read the query as a real
user typed it; judge the passage alone (not the page it came from).

## Scope

The query is a short web-search question or keyword query. The passage is a snippet of a web page.
Do not reward a passage for being long or for repeating the query's words.

## Perfectly relevant (3)

The passage is dedicated to the query and contains the exact answer.

## Highly relevant (2)

The passage has some answer for the query, but the answer may be a bit unclear, or hidden amongst
extraneous information.

## Related (1)

The passage seems related to the query but does not answer it.

## Irrelevant (0)

The passage has nothing to do with the query.

## Ambiguous queries

When a query has several plausible intents, a passage that answers the most likely intent can be
perfectly relevant; one that answers a rare intent is at most highly relevant.
"""

V2_EXTRA = """
## Answer completeness

Does the passage answer the whole question? A passage that gives the number but not the unit, or one of
two asked-for items, is partial. Judge completeness only against what the query asks.

## Source quality

Is the passage trustworthy and readable? Scraped boilerplate, navigation text, keyword stuffing, spam
and machine-translated gibberish are low quality even when on topic.
"""

COMPLETENESS = {
    "key": "completeness",
    "name": "Answer completeness",
    "description": "Whether the passage answers everything the query asks.",
    "levels": [
        {"value": 0, "label": "No answer", "definition": "The passage gives no answer to the query."},
        {"value": 1, "label": "Partial", "definition": "The passage answers part of the query, or answers it vaguely."},
        {"value": 2, "label": "Complete", "definition": "The passage answers everything the query asks."},
    ],
}
SOURCE_QUALITY = {
    "key": "source_quality",
    "name": "Source quality",
    "description": "Whether the passage is trustworthy, readable text rather than boilerplate or spam.",
    "levels": [
        {"value": 0, "label": "Junk", "definition": "Boilerplate, navigation, spam, keyword stuffing or unreadable text."},
        {"value": 1, "label": "Acceptable", "definition": "Readable but thin, promotional or of unclear origin."},
        {"value": 2, "label": "Good", "definition": "Clear, informative text from a plausible source."},
    ],
}


def demo_policy_load() -> list[str]:
    policy = Policy.objects.filter(surface__slug=SURFACE_SLUG, slug=POLICY_SLUG).first()
    if policy is not None and policy.versions.filter(status=PolicyVersion.Status.PUBLISHED).count() >= 2:
        return ["policy 'Web passage relevance' (already loaded)"]
    admin = get_user_model().objects.get(username="demo-admin")
    surface = surface_get_or_create(slug=SURFACE_SLUG, name="Web passage search",
                                    description="MS MARCO web passages for TREC DL 2023 queries (demo).")
    if policy is None:
        draft = policy_create(surface=surface, slug=POLICY_SLUG, name="Web passage relevance", text=V1_TEXT,
                              rubric={"dimensions": [trec_relevance_dimension()]}, user=admin)
        v1 = policy_version_publish(draft=draft, user=admin, expected_lock_version=draft.lock_version,
                                    change_note="TREC Deep Learning passage guidelines, verbatim scale.")
    else:
        v1 = policy.latest_published()
    from .services import policy_draft_start

    draft = policy_draft_start(policy=v1.policy, user=admin)
    draft = policy_draft_update(
        draft=draft, user=admin, expected_lock_version=draft.lock_version, text=V1_TEXT + V2_EXTRA,
        rubric={"dimensions": [trec_relevance_dimension(), COMPLETENESS, SOURCE_QUALITY]},
    )
    policy_version_publish(draft=draft, user=admin, expected_lock_version=draft.lock_version,
                           change_note="Add answer completeness and source quality dimensions.")
    return ["policy 'Web passage relevance' v1 (TREC DL guidelines) and v2 (+ completeness, source quality)"]
