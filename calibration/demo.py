"""The demo's loop: the imported GPT-4o-class runs against NIST labels, a handful of disagreements
triaged into precedents and a policy clarification, published as the next policy version."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from judges.models import JudgeRun
from policy.demo import POLICY_SLUG, SURFACE_SLUG
from policy.models import Policy
from policy.services import policy_version_publish

from review.demo import NIST_USERNAME

from .models import Disagreement, GoldLabeller, TriageDecision
from .services import agreement_snapshots, disagreements_refresh, triage_resolve

CLAUSE_FOR_LEVEL = {0: "irrelevant-0", 1: "related-1", 2: "highly-relevant-2", 3: "perfectly-relevant-3"}
DEMO_RUN = "LLMJudge: Olz-gpt4o"


def demo_calibration_load() -> list[str]:
    # NIST's labels define the benchmark: where the assessor labelled an item, a demo reviewer's label
    # counts for the human–human ceiling but does not outvote NIST in the consensus.
    nist = get_user_model().objects.filter(username=NIST_USERNAME).first()
    if nist is not None:
        GoldLabeller.objects.get_or_create(user=nist, defaults={"note": "TREC DL 2023 assessor: the reference labels"})
    if TriageDecision.objects.exists():
        return ["calibration loop (already loaded)"]
    policy = Policy.objects.get(surface__slug=SURFACE_SLUG, slug=POLICY_SLUG)
    admin = get_user_model().objects.get(username="demo-admin")
    reviewer = get_user_model().objects.get(username="demo-reviewer")
    runs = JudgeRun.objects.filter(judge_version__policy_version__policy=policy, status=JudgeRun.Status.SUCCEEDED)
    for run in runs:
        agreement_snapshots(run=run)
    run = runs.get(judge_version__judge__name=DEMO_RUN)
    found = disagreements_refresh(run=run, min_distance=2)
    lines = [f"agreement snapshots for {runs.count()} runs; {found} disagreements (distance ≥ 2) of {DEMO_RUN} in triage"]
    queue = list(Disagreement.objects.filter(run=run, status="open").order_by("-distance", "id")[:4])
    for d in queue[:3]:
        clause = CLAUSE_FOR_LEVEL[d.human_value]
        triage_resolve(disagreement=d, resolution="judge_wrong", user=reviewer, clause=clause,
                       note=f"NIST assessor labelled {d.human_value}, the judge {d.judge_value}; kept as a precedent "
                            f"for §{clause} so the judge sees a worked example.")
    if len(queue) == 4:
        d = queue[3]
        triage_resolve(disagreement=d, resolution="policy_ambiguous", user=reviewer, clause="scope",
                       note="Reviewers read 'related' and 'irrelevant' differently for passages on a neighbouring topic.",
                       amendment="A passage about a neighbouring topic that shares the query's key entity is "
                                 "related (1); one that only shares common words is irrelevant (0).")
    lines.append(f"triaged {len(queue)} disagreements: {min(3, len(queue))} became precedents, "
                 f"{max(0, len(queue) - 3)} a policy clarification")
    draft = policy.current_draft()
    if draft is not None:
        version = policy_version_publish(draft=draft, user=admin, expected_lock_version=draft.lock_version,
                                         change_note="Clarifications from triage of the GPT-4o disagreements.")
        lines.append(f"published policy {version.label} with the triage clarification")
    return lines
