"""The human ceiling is computed once per change of the human labels, not on every view: at 10M sample
items finding the multiply-labelled items takes seconds (BENCHMARKS.md, "Scale: 10M judgments")."""

import pytest

from calibration import dashboard
from review.models import HumanLabel
from tests.calibration.helpers import calibrated_run
from tests.factories import UserFactory


@pytest.mark.django_db
def test_the_ceiling_is_cached_until_a_label_changes(monkeypatch):
    run, _items, _analyst = calibrated_run(judge_labels=[3, 0, 1, 2], human_labels=[[3, 0, 1, 2], [3, 1, 1, 2]])
    calls = []
    real = dashboard.multiply_labelled_items
    monkeypatch.setattr(dashboard, "multiply_labelled_items", lambda *a, **k: calls.append(a) or real(*a, **k))

    first = dashboard.human_ceiling([run], n_resamples=50)
    assert first["n"] == 4 and len(calls) == 1
    again = dashboard.human_ceiling([run], n_resamples=50)
    assert again == first and len(calls) == 1  # served from the cache
    again["n"] = -1  # a caller's change does not reach the cached copy
    assert dashboard.human_ceiling([run], n_resamples=50)["n"] == 4

    # A new label (a correction is a new row too) changes the token: the ceiling is computed afresh.
    label = HumanLabel.objects.filter(is_latest=True).order_by("pk").first()
    HumanLabel.objects.create(item=label.item, reviewer=UserFactory(username="late"), policy_version=label.policy_version,
                              rubric_hash=label.rubric_hash, labels={"relevance": 0}, source=label.source)
    assert dashboard.human_ceiling([run], n_resamples=50)["labellers"] == 3
    assert len(calls) == 2


@pytest.mark.django_db
def test_an_ended_runs_paired_labels_are_read_once_until_a_label_changes(monkeypatch):
    """The drill-down and before/after pages re-read a big run's paired labels on every view otherwise
    (2-2.5 s per run and dimension at 1M judgments)."""
    run, _items, _analyst = calibrated_run(judge_labels=[3, 0, 1, 2], human_labels=[[3, 0, 1, 2]])
    assert not run.is_active
    calls = []
    real = dashboard.run_paired_with_humans
    monkeypatch.setattr(dashboard, "run_paired_with_humans", lambda *a, **k: calls.append(a) or real(*a, **k))

    cells = dashboard.cell_items(run, dimension="relevance", judge_value=3, human_value=3)
    assert len(cells) == 1 and len(calls) == 1
    assert dashboard.cell_items(run, dimension="relevance", judge_value=3, human_value=3) == cells
    assert dashboard.disagreement_diff(old=run, new=run)["old_paired"] == 4 and len(calls) == 1  # cached too

    # A correction (a new label row) changes the token: the pairs are read afresh and the cell follows.
    label = HumanLabel.objects.filter(is_latest=True, labels__relevance=3).get()
    label.is_latest = False
    label.save(update_fields=["is_latest"])
    HumanLabel.objects.create(item=label.item, reviewer=label.reviewer, policy_version=label.policy_version,
                              rubric_hash=label.rubric_hash, labels={"relevance": 0}, source=label.source,
                              revision=label.revision + 1)
    assert dashboard.cell_items(run, dimension="relevance", judge_value=3, human_value=3) == []
    assert len(calls) == 2


@pytest.mark.django_db
def test_an_ended_runs_unstored_agreement_is_computed_once_until_a_label_changes(monkeypatch):
    """Snapshots are stored by POSTs only; a run that just ended has none, and every calibration page
    showing it recomputed its agreement on every view (2 s per 1M-judgment run)."""
    run, _items, _analyst = calibrated_run(judge_labels=[3, 0, 1, 2], human_labels=[[3, 0, 1, 2]])
    calls = []
    real = dashboard.agreement_run_vs_humans
    monkeypatch.setattr(dashboard, "agreement_run_vs_humans", lambda *a, **k: calls.append(a) or real(*a, **k))

    first = dashboard.run_agreement(run, n_resamples=50)
    assert first[0].n == 4 and first[0].pk is None and len(calls) == 1  # shown, not stored
    assert [s.n for s in dashboard.run_agreement(run, n_resamples=50)] == [4] and len(calls) == 1

    label = HumanLabel.objects.filter(is_latest=True).order_by("pk").first()
    HumanLabel.objects.create(item=label.item, reviewer=UserFactory(username="later"), policy_version=label.policy_version,
                              rubric_hash=label.rubric_hash, labels={"relevance": 0}, source=label.source)
    dashboard.run_agreement(run, n_resamples=50)
    assert len(calls) == 2
