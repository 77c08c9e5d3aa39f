"""The disagreement/uncertainty sampling strategy, registered with traffic's strategy registry.

Items where judges disagree with each other (spread of their overall labels), with the human
consensus (distance), or failed to judge at all are the ones worth a reviewer's time.
"""

from __future__ import annotations

from collections import defaultdict

from traffic.sampling import DrawContext, SamplingError, register_strategy

from judges.models import JudgeRun, Judgment

from .selectors import human_consensus


def _run_ids(params: dict) -> list[int]:
    raw = params.get("runs")
    if isinstance(raw, str):
        raw = [part for part in raw.replace(" ", "").split(",") if part]
    try:
        ids = sorted({int(r) for r in raw or []})
    except (TypeError, ValueError):
        raise SamplingError("runs must list judge run ids, e.g. [12, 15]") from None
    if not ids:
        # Named explicitly so the sample stays reproducible when new runs finish later.
        raise SamplingError("runs must list the judge run ids whose (dis)agreement to sample from")
    return ids


@register_strategy("disagreement", label="Disagreement / uncertainty",
                   help="size items where the listed judge runs (runs=[ids]) disagree most with each other or with "
                        "the human consensus, or failed to judge; ties broken by the seed.")
def draw_disagreement(ctx: DrawContext) -> list[int]:
    size = int(ctx.params.get("size", 100))
    run_ids = _run_ids(ctx.params)
    runs = list(JudgeRun.objects.filter(pk__in=run_ids, sample__surface=ctx.surface).select_related("judge_version__policy_version"))
    if len(runs) != len(run_ids):
        raise SamplingError("every run must exist and belong to this surface")
    served = set(ctx.entries.values_list("item_id", flat=True))
    labels: dict[int, list[int]] = defaultdict(list)
    failed: set[int] = set()
    for run in runs:
        key = run.judge_version.policy_version.parsed_rubric().overall.key
        for item_id, status, value in Judgment.objects.filter(run=run, item_id__in=served).values_list(
                "item_id", "status", f"labels__{key}"):
            if status == Judgment.Status.OK and value is not None:
                labels[item_id].append(int(value))
            else:
                failed.add(item_id)
    candidates = sorted(set(labels) | failed)
    key = runs[0].judge_version.policy_version.parsed_rubric().overall.key
    h_ids, h_vals, _ = human_consensus(candidates, key)
    human = dict(zip(h_ids.tolist(), h_vals.tolist()))
    scored = []
    for item_id in candidates:
        values = labels.get(item_id, [])
        spread = (max(values) - min(values)) if values else 0
        distance = max((abs(v - human[item_id]) for v in values), default=0) if item_id in human else 0
        scored.append((spread + distance + (2 if item_id in failed else 0), ctx.rng.random(), item_id))
    scored.sort(key=lambda s: (-s[0], s[1]))
    return [item_id for score, _, item_id in scored[:size] if score > 0]
