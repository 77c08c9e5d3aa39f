"""The human consensus: one stated rule (sage_stats.consensus), the same on both database paths, used
by agreement, disagreements and precedents, and shown on the pages."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import connection

from calibration import selectors
from calibration.models import Disagreement, GoldLabeller
from calibration.selectors import agreement_run_vs_humans, human_consensus
from calibration.services import disagreements_refresh, triage_resolve
from sage_stats import CONSENSUS_RULE, consensus_by_item, consensus_of
from tests.calibration.helpers import calibrated_run
from tests.factories import UserFactory

# The consensus has a SQL path (PostgreSQL) and a portable one (the embedded default runs it for real).
pytestmark = pytest.mark.embedded


@pytest.mark.parametrize("labels, expected", [
    ([3, 0], 1),          # two far-apart labels: neither wins alone (the lower median said 0)
    ([1, 2], 1),          # adjacent tie: halfway rounds down
    ([0, 2], 1),
    ([2], 2),
    ([0, 1, 3], 1),       # odd count: the middle label
    ([0, 3, 3, 3], 3),
    ([-2, 1], -1),        # floor, not truncation, on a scale below zero
])
def test_consensus_is_the_median_with_halfway_rounding_down(labels, expected):
    assert consensus_of(labels) == expected


def test_a_gold_labeller_wins_where_they_labelled_and_others_count_elsewhere():
    assert consensus_of([3, 0, 0], gold=[True, False, False]) == 3
    items, values, counted = consensus_by_item([1, 1, 2, 2], [3, 0, 0, 1], gold=[True, False, False, False])
    assert (items.tolist(), values.tolist(), counted.tolist()) == ([1, 2], [3, 0], [1, 2])
    assert consensus_of([]) is None


def paths():
    """Both implementations: the portable one (numpy, sage_stats) and, on PostgreSQL, the SQL one."""
    yield "portable", mock.patch.object(selectors, "use_sql_path", return_value=False)
    if connection.vendor == "postgresql":
        yield "sql", mock.patch.object(selectors, "use_sql_path", return_value=True)


@pytest.mark.django_db
def test_nist_3_and_one_reviewer_0_is_not_0_on_either_path():
    # human0 plays the NIST assessor (3 on item 0), human1 a fresh reviewer (0 on item 0).
    run, items, _ = calibrated_run(judge_labels=[3, 1, 2, 0], human_labels=[[3, 1, 2, 0], [0, 2, None, 0]])
    ids = [i.pk for i in items]
    for name, patch in paths():
        with patch:
            got, values, counted = human_consensus(ids, "relevance")
        assert values.tolist() == [1, 1, 2, 0], name
        assert counted.tolist() == [2, 2, 1, 2], name
    [r] = agreement_run_vs_humans(run, n_resamples=50)
    assert r.confusion[3][1] == 1 and r.confusion[3][0] == 0  # the judge's 3 now meets a consensus of 1

    GoldLabeller.objects.create(user=UserFactory(username="human0"), note="NIST")
    for name, patch in paths():
        with patch:
            _, values, counted = human_consensus(ids, "relevance")
        assert values.tolist() == [3, 1, 2, 0], name
        assert counted.tolist() == [1, 1, 1, 1], name
    assert disagreements_refresh(run=run) == 0  # the judge agrees with NIST everywhere


@pytest.mark.django_db
def test_sql_and_portable_consensus_agree_on_many_items():
    if connection.vendor != "postgresql":
        pytest.skip("the SQL path is PostgreSQL only")
    labels = [[(i * 7 + r * 3) % 4 if (i + r) % 5 else None for i in range(40)] for r in range(4)]
    run, items, _ = calibrated_run(judge_labels=[i % 4 for i in range(40)], human_labels=labels, queries=4)
    GoldLabeller.objects.create(user=UserFactory(username="human3"))
    ids = [i.pk for i in items]
    other = UserFactory(username="human1").pk
    with mock.patch.object(selectors, "use_sql_path", return_value=False):
        portable = [a.tolist() for a in human_consensus(ids, "relevance")]
        portable_some = [a.tolist() for a in human_consensus(ids[:10], "relevance", exclude_reviewers=[other])]
    assert [a.tolist() for a in human_consensus(ids, "relevance")] == portable
    assert [a.tolist() for a in human_consensus(ids[:10], "relevance", exclude_reviewers=[other])] == portable_some
    assert len(portable[0]) == 40 and portable != portable_some


@pytest.mark.django_db
def test_a_triage_precedent_is_prefilled_with_the_consensus():
    run, items, analyst = calibrated_run(judge_labels=[3, 0], human_labels=[[0, 0], [2, 0]])
    disagreements_refresh(run=run, min_distance=2)
    d = Disagreement.objects.get()
    assert d.human_value == 1  # median of 0 and 2; the lower median said 0
    decision = triage_resolve(disagreement=d, resolution="judge_wrong", note="x", user=analyst)
    assert decision.precedent.labels == {"relevance": 1}


@pytest.mark.django_db
def test_the_rule_is_shown_on_the_dashboard_run_cell_and_triage_pages(client):
    run, items, analyst = calibrated_run(judge_labels=[3, 0], human_labels=[[3, 0], [0, 0]])
    GoldLabeller.objects.create(user=UserFactory(username="human0"))
    client.force_login(analyst)
    policy = run.judge_version.policy_version.policy_id
    pages = [f"/calibration/?policy={policy}", f"/calibration/runs/{run.pk}/",
             f"/calibration/runs/{run.pk}/cell/?dimension=relevance&a=3&b=3", "/calibration/triage/"]
    for url in pages:
        html = client.get(url).content.decode()
        assert CONSENSUS_RULE in html, url
        assert "Gold: human0" in html, url


@pytest.mark.django_db
def test_triage_detail_names_the_consensus_and_marks_gold(client):
    run, items, analyst = calibrated_run(judge_labels=[3, 0], human_labels=[[0, 0], [1, 0]])
    GoldLabeller.objects.create(user=UserFactory(username="human1"))
    disagreements_refresh(run=run)
    d = Disagreement.objects.get()
    assert d.human_value == 1
    client.force_login(analyst)
    html = client.get(f"/calibration/triage/{d.pk}/").content.decode()
    assert CONSENSUS_RULE in html and "human1</strong> (gold)" in html
    assert '<span id="triage-consensus">1</span> from 2 labels' in html
