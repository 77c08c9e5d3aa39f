"""Writes of calibration: agreement snapshots, disagreements, triage resolutions, re-judging."""

from __future__ import annotations

import numpy as np
from django.contrib.auth.models import AbstractUser
from django.db import transaction

from judges.models import JudgeRun, JudgeVersion, Judgment
from judges.services import judge_run_start, judge_version_create
from policy.services import policy_amend_at_clause
from precedent.models import MAX_BODY_CHARS, Precedent
from precedent.services import PrecedentData, precedent_create
from review.models import HumanLabel
from review.services import human_label_correct
from sage.roles import Role, has_role
from sage.text import nul_problem

from .models import AgreementSnapshot, Disagreement, TriageDecision
from .selectors import (
    agreement_run_vs_humans,
    human_consensus,
    run_paired_with_humans,
    snapshot_fields,
    snapshot_token,
)


class CalibrationError(Exception):
    """A calibration rule was broken; the message is shown to the user as is."""


def agreement_snapshots(*, run: JudgeRun, refresh: bool = False, n_resamples: int = 1000) -> list[AgreementSnapshot]:
    """Store the per-dimension agreement of a run with humans, recomputing only when it is stale.

    A write, called from POSTs (sending a run's disagreements to triage) and the demo loader; pages
    read through `dashboard.run_agreement`, which computes a stale agreement afresh and never writes.
    """
    token = snapshot_token(run)
    snapshots = list(AgreementSnapshot.objects.filter(run=run))
    dims = run.judge_version.policy_version.parsed_rubric().keys
    if not refresh and snapshots and all(s.labels_token == token for s in snapshots) and len(snapshots) == len(dims):
        return sorted(snapshots, key=lambda s: dims.index(s.dimension))
    out = []
    for r in agreement_run_vs_humans(run, n_resamples=n_resamples):
        snapshot, _ = AgreementSnapshot.objects.update_or_create(run=run, dimension=r.dimension,
                                                                 defaults=snapshot_fields(r, token))
        out.append(snapshot)
    return out


def disagreements_refresh(*, run: JudgeRun, min_distance: int = 1) -> int:
    """Record every item where the judge and the human consensus differ by ≥ min_distance; idempotent."""
    if min_distance < 1:
        raise CalibrationError("The distance threshold must be at least 1.")
    judgment_ids = dict(Judgment.objects.filter(run=run, status=Judgment.Status.OK).values_list("item_id", "id"))
    rows = []
    for dim in run.judge_version.policy_version.parsed_rubric().dimensions:
        common, judge, human, _ = run_paired_with_humans(run, dim.key)
        distance = np.abs(judge - human)
        for item_id, jv, hv, d in zip(common.tolist(), judge.tolist(), human.tolist(), distance.tolist()):
            if d >= min_distance:
                rows.append(Disagreement(run=run, item_id=item_id, judgment_id=judgment_ids[item_id], dimension=dim.key,
                                         judge_value=jv, human_value=hv, distance=d))
    before = Disagreement.objects.filter(run=run).count()
    # ignore_conflicts returns every object, inserted or not: count the rows instead.
    Disagreement.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
    return Disagreement.objects.filter(run=run).count() - before


def _human_labels_for(item_id: int, dimension: str) -> list[HumanLabel]:
    return list(HumanLabel.objects.filter(item_id=item_id, is_latest=True, **{f"labels__{dimension}__isnull": False})
                .select_related("reviewer", "policy_version").order_by("reviewer_id"))


def triage_resolve(*, disagreement: Disagreement, resolution: str, note: str, user: AbstractUser,
                   clause: str = "", accept_precedent: bool = True, amendment: str = "",
                   corrected_value: int | None = None) -> TriageDecision:
    """Resolve a disagreement and create exactly the records its resolution calls for.

    judge wrong → a precedent from the item, pre-filled with the human labels and rationale (plus a
    policy amendment when `amendment` is given); human wrong → a new revision of each human label that
    disagrees (history kept); policy ambiguous → a policy draft amended at the clause.
    """
    if not has_role(user, Role.REVIEWER):
        raise CalibrationError("Only reviewers and admins triage disagreements.")
    if resolution not in TriageDecision.Resolution.values:
        raise CalibrationError(f"Unknown resolution {resolution!r}.")
    if not note.strip():
        raise CalibrationError("Say why: a note is required for every resolution.")
    if (problem := nul_problem({"note": note, "clause": clause, "amendment": amendment})) is not None:
        # PostgreSQL stores no NUL (sage/text.py): a message now, not a DataError half-way through.
        raise CalibrationError(f"Nothing was changed: {problem} (U+0000), which cannot be stored; remove it.")
    with transaction.atomic():
        locked = Disagreement.objects.select_for_update().select_related(
            "run__judge_version__policy_version__policy", "item__query", "item__document", "judgment").get(pk=disagreement.pk)
        if locked.status != Disagreement.Status.OPEN:
            raise CalibrationError("This disagreement was already resolved.")
        policy = locked.run.judge_version.policy_version.policy
        decision = TriageDecision(disagreement=locked, resolution=resolution, note=note.strip(), clause=clause,
                                  decided_by=user)
        humans = _human_labels_for(locked.item_id, locked.dimension)
        if resolution == TriageDecision.Resolution.JUDGE_WRONG:
            decision.precedent = _precedent_from(locked, humans, note, clause, user, accept_precedent)
            if amendment.strip():
                decision.policy_draft = _amend(policy, clause, amendment, locked, user)
        elif resolution == TriageDecision.Resolution.HUMAN_WRONG:
            value = locked.judge_value if corrected_value is None else corrected_value
            dim = locked.run.judge_version.policy_version.parsed_rubric().dimension(locked.dimension)
            if value not in dim.values:
                raise CalibrationError(f"{value} is not a level of {dim.name}.")
            wrong = [h for h in humans if h.labels.get(locked.dimension) != value]
            if not wrong:
                raise CalibrationError("No human label differs from the corrected value.")
            for label in wrong:
                decision.corrected_label = human_label_correct(
                    label=label, labels={**label.labels, locked.dimension: value}, rationale=label.rationale,
                    user=user, reason=f"Triage of disagreement #{locked.pk}: {note.strip()}")
        else:
            if not amendment.strip():
                raise CalibrationError("Write the clarification to add to the policy.")
            decision.policy_draft = _amend(policy, clause, amendment, locked, user)
        decision.save()
        Disagreement.objects.filter(pk=locked.pk).update(status=Disagreement.Status.RESOLVED)
    return decision


def _precedent_from(d: Disagreement, humans: list[HumanLabel], note: str, clause: str, user, accept: bool) -> Precedent:
    version = d.run.judge_version.policy_version.policy.latest_published()
    rubric = version.parsed_rubric()
    # Pre-fill with the human consensus on every dimension the humans labelled (CONSENSUS_RULE).
    labels: dict[str, int] = {}
    for dim in rubric.dimensions:
        ids, values, _ = human_consensus([d.item_id], dim.key)
        if ids.size:
            labels[dim.key] = int(values[0])
    rationale = " / ".join(h.rationale for h in humans if h.rationale) or note
    document = d.item.document
    data = PrecedentData(query=d.item.query.text, title=document.title[:500], body=document.body[:MAX_BODY_CHARS],
                         url=document.link_url, labels=labels, rationale=rationale, clause=clause,
                         tags=["triage", d.dimension], metadata={"disagreement": d.pk, "item_hash": d.item.hash})
    return precedent_create(policy=version.policy, data=data, user=user, provenance=Precedent.Provenance.TRIAGE,
                            source_ref=f"disagreement:{d.pk}", accept=accept, note=f"from triage: {note[:200]}")


def _amend(policy, clause: str, amendment: str, d: Disagreement, user):
    text = f"> Clarification (triage of disagreement #{d.pk}, {d.dimension}): {amendment.strip()}"
    return policy_amend_at_clause(policy=policy, clause=clause, text=text, user=user)


def calibration_rejudge(*, run: JudgeRun, user: AbstractUser) -> JudgeRun:
    """Judge the run's sample again under the latest policy version and the current precedents.

    Items whose exact prompt did not change are reused from the cache at no cost.
    """
    version = run.judge_version
    if version.backend == JudgeVersion.Backend.IMPORTED:
        raise CalibrationError("Imported labels cannot be re-judged; re-judge with a model judge.")
    latest = version.policy_version.policy.latest_published()
    judge_version = version.judge.latest_version()
    if judge_version.policy_version_id != latest.pk:
        judge_version = judge_version_create(judge=version.judge, user=user, policy_version=latest,
                                             change_note=f"re-judge under {latest.label}")
    return judge_run_start(version=judge_version, sample=run.sample, user=user)
