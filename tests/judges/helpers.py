"""A surface with traffic, a published policy, a sample and a judge on the 'fault' endpoint; runs that
fail in the ways the failure tests need."""

from __future__ import annotations

from decimal import Decimal

import pytest

from judges.models import JudgeRun
from judges.services import judge_create, judge_run_prompt_budget, judge_run_start
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


def lengthen(sample, how_many: int, chars: int = 3000) -> None:
    """Give the first `how_many` items of the sample a long body (about chars / 4 more prompt tokens)."""
    for sample_item in sample.sample_items.select_related("item__document").order_by("position")[:how_many]:
        document = sample_item.item.document
        document.body = "A long passage about something else entirely. " * (chars // 47 + 1)
        document.save()


def largest_prompt_tokens(version, sample) -> int:
    return judge_run_prompt_budget(version=version, sample=sample, precedent_set=None).prompt_tokens


def web_only_endpoint(settings, fault_server) -> None:
    """An endpoint this process (the web server) knows and the worker does not: its chunks raise."""
    settings.SAGE_JUDGE_ENDPOINTS = {**settings.SAGE_JUDGE_ENDPOINTS, "web-only": {
        "base_url": fault_server.base_url, "api_key": "t", "json_mode": "json_schema", "context_tokens": None}}


def start_and_lose(version, sample, analyst) -> JudgeRun:
    """Start a run whose execute task never reaches a worker (as with a killed worker on the filesystem broker)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("judges.tasks.judge_run_execute_task.delay", lambda run_id: None)
        return judge_run_start(version=version, sample=sample, user=analyst)
