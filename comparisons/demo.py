"""The demo's comparison: dense-minilm vs bm25 over every demo query, judged by an imported GPT-4o
LLMJudge run (its labels exist already, so it computes at once, without a worker or an API key)."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from judges.models import Judge
from traffic.demo import SURFACE_SLUG
from traffic.models import Variant

from .models import Comparison
from .services import comparison_create, comparison_refresh

DEMO_JUDGE = "LLMJudge: Olz-gpt4o"
DEMO_NAME = "dense-minilm vs bm25 (GPT-4o labels)"


def demo_comparisons_load() -> list[str]:
    if Comparison.objects.filter(name=DEMO_NAME).exists():
        return ["comparison (already loaded)"]
    judge = Judge.objects.filter(name=DEMO_JUDGE).first()
    if judge is None:
        return [f"comparison skipped: no judge {DEMO_JUDGE!r}"]
    control = Variant.objects.get(surface__slug=SURFACE_SLUG, name="bm25")
    treatment = Variant.objects.get(surface__slug=SURFACE_SLUG, name="dense-minilm")
    analyst = get_user_model().objects.get(username="demo-analyst")
    comparison = comparison_create(surface=control.surface, control=control, treatment=treatment,
                                   judge_version=judge.latest_version(), k=10, user=analyst, name=DEMO_NAME,
                                   source="demo")
    comparison = comparison_refresh(comparison_id=comparison.pk)
    return [f"comparison {comparison.name!r}: {comparison.status}, verdict {comparison.results.get('verdict')}"]
