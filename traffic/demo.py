"""The demo's traffic: two real rankers' top-20 lists over the TREC DL 2023 subset, and samples."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model

from policy.models import Surface

from .models import Sample
from .services import sample_draw, traffic_import, variant_get_or_create

SURFACE_SLUG = "web-passages"
RANKINGS = "trec-dl-2023/rankings.jsonl"
CALIBRATION_SAMPLE = "Calibration: union of top-10, seed 7"


def demo_traffic_load() -> list[str]:
    surface = Surface.objects.get(slug=SURFACE_SLUG)
    variant_get_or_create(surface=surface, name="bm25", role="control", ramp_percent=90,
                          description="Okapi BM25 (bm25s) over the judged passage pool.")
    variant_get_or_create(surface=surface, name="dense-minilm", role="treatment", ramp_percent=10,
                          description="Dense retrieval: cosine similarity of all-MiniLM-L6-v2 embeddings.")
    analyst = get_user_model().objects.get(username="demo-analyst")
    path = settings.SAGE_DEMO_DIR / RANKINGS
    with path.open("rb") as fh:
        result = traffic_import(surface=surface, source=fh, filename=path.name, user=analyst)
    lines = [f"traffic: {result.traffic_import.rows} result entries of bm25 and dense-minilm"
             + ("" if result.created else " (already loaded)")]
    if not Sample.objects.filter(surface=surface, name=CALIBRATION_SAMPLE).exists():
        sample = sample_draw(surface=surface, name=CALIBRATION_SAMPLE, strategy="union_top_k",
                             params={"k": 10, "control": "bm25", "treatment": "dense-minilm"}, seed=7, user=analyst)
        lines.append(f"sample {sample.name!r}: {sample.item_count} items")
    if not Sample.objects.filter(surface=surface, name="Uniform 40, seed 1").exists():
        sample_draw(surface=surface, name="Uniform 40, seed 1", strategy="uniform", params={"size": 40}, seed=1,
                    user=analyst)
        lines.append("sample 'Uniform 40, seed 1'")
    return lines
