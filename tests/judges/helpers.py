"""A surface with traffic, a published policy, a sample and a judge on the 'fault' endpoint."""

from __future__ import annotations

from decimal import Decimal

from judges.services import judge_create
from tests.factories import UserFactory, published_version, ranked_traffic, traffic_surface
from traffic.services import sample_draw


def judge_setup(*, queries: int = 3, depth: int = 4, endpoint: str = "fault", slug: str = "judge-web", **config):
    surface = traffic_surface(slug)
    ranked_traffic(surface, queries=queries, depth=depth, shared=depth)
    version = published_version(surface)
    analyst = UserFactory(username="judge-analyst", roles=["analyst"])
    sample = sample_draw(surface=surface, name="all", strategy="top_k",
                         params={"k": depth, "variants": ["control"]}, seed=1, user=analyst)
    judge_version = judge_create(
        name=f"judge {slug}", surface=surface, user=analyst, backend="openai", model_name="test-model",
        endpoint_name=endpoint, policy_version=version, precedent_k=config.pop("precedent_k", 0),
        price_in_per_m=Decimal("2.50"), price_out_per_m=Decimal("10"), concurrency=config.pop("concurrency", 8),
        **config,
    )
    return judge_version, sample, analyst
