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
