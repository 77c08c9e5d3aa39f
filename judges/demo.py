"""Demo judges: five published LLMJudge runs imported over the calibration sample (real GPT-4o-class
labels on screen without any API key), and a local SmolLM2 judge for the llama.cpp server."""

from __future__ import annotations

import io
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model

from policy.demo import POLICY_SLUG, SURFACE_SLUG
from policy.models import Policy
from traffic.demo import CALIBRATION_SAMPLE
from traffic.models import Sample

from .models import Judge, JudgeRun
from .services import judge_create, judge_run_import

PUBLISHED = "trec-dl-2023/published_llm_labels.jsonl"
RUNS = {
    "Olz-gpt4o": "gpt-4o",
    "RMITIR-GPT4o": "gpt-4o",
    "RMITIR-llama70B": "llama-3-70b",
    "h2oloo-fewself": "unstated (h2oloo few-shot self-consistency)",
    "willia-umbrela1": "unstated (UMBRELA prompt)",
}
LOCAL_JUDGE = "SmolLM2-135M (local llama.cpp)"
# What a GPT-4o-class judgment costs, for the teacher/student cost table: about 1,000 prompt tokens
# (policy, precedents, passage) at $2.50 per million and 100 answer tokens at $10 per million.
IMPORTED_PRICE_PER_1K = Decimal("3.50")


def _clip(value: int) -> int:
    # The organizers clip published labels to 0-3 before scoring (two 5s exist in RMITIR-llama70B).
    return max(0, min(3, int(value)))


def demo_judges_load() -> list[str]:
    policy = Policy.objects.get(surface__slug=SURFACE_SLUG, slug=POLICY_SLUG)
    v1 = policy.versions.get(number=1)
    sample = Sample.objects.get(surface=policy.surface, name=CALIBRATION_SAMPLE)
    analyst = get_user_model().objects.get(username="demo-analyst")
    raw = (settings.SAGE_DEMO_DIR / PUBLISHED).read_bytes()
    lines = []
    for run_name, model in RUNS.items():
        name = f"LLMJudge: {run_name}"
        if Judge.objects.filter(name=name).exists():
            continue
        version = judge_create(
            name=name, surface=policy.surface, user=analyst, backend="imported", model_name=model,
            policy_version=v1, precedent_k=0, price_per_1k=IMPORTED_PRICE_PER_1K,
            description=f"Published labels of the LLMJudge (SIGIR 2024) run {run_name}.",
            provenance={"source": "llm4eval/LLMJudge-benchmark submissions/scores (MIT)", "run": run_name,
                        "note": "labels clipped to 0-3 as the organizers did"},
        )
        report = judge_run_import(
            version=version, sample=sample, stream=io.BytesIO(raw), user=analyst, skip_unmatched=True,
            transform=lambda row, run_name=run_name: {**row, "labels": {"relevance": _clip(row["labels"][run_name])}},
        )
        if report.errors:
            raise RuntimeError(f"demo import of {run_name} failed: {report.errors[:3]}")
        lines.append(f"imported judge run {run_name}: {report.run.done_items} judgments")
    if not Judge.objects.filter(name=LOCAL_JUDGE).exists():
        judge_create(name=LOCAL_JUDGE, surface=policy.surface, user=analyst, backend="openai", model_name="local",
                     endpoint_name="local", policy_version=v1, precedent_k=2, concurrency=2, max_tokens=200,
                     doc_char_budget=1200, description="SmolLM2-135M-Instruct on llama.cpp's OpenAI-compatible server: "
                     "proves the plumbing end to end; its labels are poor.")
        lines.append(f"judge {LOCAL_JUDGE!r} (endpoint 'local')")
    lines.extend(_local_run_start(policy.surface, analyst))
    return lines or ["judges (already loaded)"]


def _local_run_start(surface, analyst) -> list[str]:
    """When the local llama.cpp server answers, queue one live run so the demo shows a progress bar."""
    import urllib.request

    from .services import JudgeError, judge_run_start

    endpoint = settings.SAGE_JUDGE_ENDPOINTS.get("local")
    judge = Judge.objects.get(name=LOCAL_JUDGE)
    if endpoint is None or JudgeRun.objects.filter(judge_version__judge=judge).exists():
        return []
    try:
        urllib.request.urlopen(f"{endpoint['base_url']}/models", timeout=2)
    except OSError:
        return [f"local judge not run: no server at {endpoint['base_url']} (start one, or point SAGE_ENDPOINT_LOCAL_BASE_URL at any OpenAI-compatible endpoint)"]
    sample = Sample.objects.get(surface=surface, name="Uniform 40, seed 1")
    try:
        run = judge_run_start(version=judge.latest_version(), sample=sample, user=analyst)
    except JudgeError as exc:  # e.g. its prompts do not fit the model the endpoint now points at
        return [f"local judge not run: {exc}"]
    return [f"queued judge run #{run.pk}: {LOCAL_JUDGE} on {sample.name!r} (runs once the worker starts)"]
