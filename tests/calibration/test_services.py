import pytest

from calibration.models import AgreementSnapshot, Disagreement, TriageDecision
from calibration.selectors import agreement_human_human, agreement_run_vs_humans, human_consensus
from calibration.services import (
    CalibrationError,
    agreement_snapshots,
    calibration_rejudge,
    disagreements_refresh,
    triage_resolve,
)
from precedent.models import Precedent
from review.models import HumanLabel
from tests.calibration.helpers import calibrated_run

pytestmark = pytest.mark.django_db


def test_consensus_is_the_median_of_latest_labels_rounding_halfway_down():
    run, items, _ = calibrated_run(judge_labels=[0, 1, 2, 3], human_labels=[[0, 1, 2, 3], [1, 2, 2, 2], [3, 3, 2, None]])
    ids, consensus, counts = human_consensus([i.pk for i in items], "relevance")
    assert consensus.tolist() == [1, 2, 2, 2] and counts.tolist() == [3, 3, 3, 2]


def test_run_vs_humans_uses_only_items_both_labelled():
    run, items, _ = calibrated_run(judge_labels=[0, 1, 2, 3, 0, 1], human_labels=[[0, 1, 2, 3, None, None]])
    [r] = agreement_run_vs_humans(run, n_resamples=100)
    assert r.n == 4 and r.estimates["exact"] == 1.0


def test_human_human_ceiling_pairs_two_reviewers():
    run, items, _ = calibrated_run(judge_labels=[0, 1, 2, 3], human_labels=[[0, 1, 2, 3], [0, 1, 3, 3]])
    [r] = agreement_human_human([i.pk for i in items], run.judge_version.policy_version, n_resamples=100)
    assert r.n == 4 and r.estimates["exact"] == 0.75


def test_snapshots_are_cached_until_human_labels_change(reviewer):
    run, items, analyst = calibrated_run(judge_labels=[0, 1, 2, 3], human_labels=[[0, 1, 2, 0]])
    first = agreement_snapshots(run=run)
    assert first[0].estimates["exact"] == 0.75
    assert agreement_snapshots(run=run)[0].computed_at == first[0].computed_at
    disagreements_refresh(run=run)
    d = Disagreement.objects.get()
    triage_resolve(disagreement=d, resolution="human_wrong", note="the passage answers it", user=analyst)
    assert agreement_snapshots(run=run)[0].estimates["exact"] == 1.0
    assert AgreementSnapshot.objects.count() == 1


def test_disagreements_respect_the_distance_and_are_idempotent():
    run, _, _ = calibrated_run(judge_labels=[0, 1, 2, 3], human_labels=[[0, 2, 0, 0]])
    assert disagreements_refresh(run=run, min_distance=2) == 2
    assert disagreements_refresh(run=run, min_distance=2) == 0
    assert sorted(Disagreement.objects.values_list("distance", flat=True)) == [2, 3]
    with pytest.raises(CalibrationError):
        disagreements_refresh(run=run, min_distance=0)


def open_disagreement(judge=3, human=0):
    run, items, analyst = calibrated_run(judge_labels=[judge, 0], human_labels=[[human, 0]])
    disagreements_refresh(run=run)
    return Disagreement.objects.get(), analyst


def test_judge_wrong_creates_an_accepted_precedent_prefilled_with_the_human_labels():
    d, user = open_disagreement()
    decision = triage_resolve(disagreement=d, resolution="judge_wrong", note="keyword match only", user=user,
                              clause="relevance")
    p = decision.precedent
    assert (p.labels, p.status, p.provenance, p.source_ref) == ({"relevance": 0}, "accepted", "triage", f"disagreement:{d.pk}")
    assert p.rationale == "human 0 says 0" and p.query == d.item.query.text
    assert decision.policy_draft is None and decision.corrected_label is None
    d.refresh_from_db()
    assert d.status == "resolved"
    assert Precedent.objects.count() == 1 and TriageDecision.objects.count() == 1


def test_judge_wrong_with_an_amendment_also_drafts_the_policy():
    d, user = open_disagreement()
    decision = triage_resolve(disagreement=d, resolution="judge_wrong", note="n", user=user, clause="relevance",
                              amendment="Keyword overlap alone is not relevance.")
    assert decision.precedent and decision.policy_draft.status == "draft"
    assert "Keyword overlap alone is not relevance." in decision.policy_draft.text


def test_human_wrong_adds_a_revision_and_keeps_history():
    d, user = open_disagreement(judge=3, human=0)
    decision = triage_resolve(disagreement=d, resolution="human_wrong", note="it does answer", user=user)
    label = decision.corrected_label
    assert label.labels == {"relevance": 3} and label.revision == 2 and label.source == "correction"
    assert HumanLabel.objects.filter(item=d.item).count() == 2
    assert HumanLabel.objects.get(item=d.item, revision=1).labels == {"relevance": 0}
    assert not Precedent.objects.exists()


def test_policy_ambiguous_amends_the_draft_at_the_clause():
    d, user = open_disagreement()
    policy = d.run.judge_version.policy_version.policy
    with pytest.raises(CalibrationError, match="Write the clarification"):
        triage_resolve(disagreement=d, resolution="policy_ambiguous", note="unclear", user=user)
    decision = triage_resolve(disagreement=d, resolution="policy_ambiguous", note="unclear", user=user,
                              clause="relevance", amendment="Lists of links are irrelevant.")
    draft = policy.current_draft()
    assert decision.policy_draft == draft and "Lists of links are irrelevant." in draft.text
    assert not Precedent.objects.exists() and not HumanLabel.objects.filter(source="correction").exists()


def test_a_resolution_happens_once_and_needs_a_reason(analyst):
    d, user = open_disagreement()
    with pytest.raises(CalibrationError, match="note is required"):
        triage_resolve(disagreement=d, resolution="judge_wrong", note=" ", user=user)
    with pytest.raises(CalibrationError, match="Only reviewers"):
        triage_resolve(disagreement=d, resolution="judge_wrong", note="x", user=analyst)
    triage_resolve(disagreement=d, resolution="judge_wrong", note="x", user=user)
    with pytest.raises(CalibrationError, match="already resolved"):
        triage_resolve(disagreement=d, resolution="human_wrong", note="x", user=user)


def test_imported_runs_cannot_be_rejudged():
    d, user = open_disagreement()
    with pytest.raises(CalibrationError, match="cannot be re-judged"):
        calibration_rejudge(run=d.run, user=user)
