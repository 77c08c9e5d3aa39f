"""Every number on the calibration pages right: the human ceiling follows the items, the heatmap cell
lists the labels, every interval says how many queries it rests on, the page opens where the work
is, a before/after view counts what was not judged, and no page view writes."""

from __future__ import annotations

import io
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from calibration.models import AgreementSnapshot, Disagreement
from calibration.services import agreement_snapshots, disagreements_refresh
from judges.models import JudgeRun, Judgment
from judges.services import judge_create, judge_run_import
from review.models import HumanLabel
from review.services import review_queue_create
from tests.calibration.helpers import calibrated_run
from tests.factories import UserFactory, published_version, traffic_surface
from tests.policy_factories import publish_next

# JSON key lookups and NULL ordering differ between PostgreSQL and the embedded default: run on both.
pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def import_run(version, sample, items, labels, analyst, name):
    judge_version = judge_create(name=name, surface=sample.surface, user=analyst, backend="imported", model_name=name,
                                 policy_version=version, precedent_k=0)
    lines = b"".join(json.dumps({"query_id": i.query.external_id, "doc_id": i.document.external_id,
                                 "labels": {"relevance": v}}).encode() + b"\n" for i, v in zip(items, labels))
    report = judge_run_import(version=judge_version, sample=sample, stream=io.BytesIO(lines), user=analyst)
    assert not report.errors, report.errors
    return report.run


def test_the_ceiling_follows_the_items_across_policy_versions_and_says_which_labels(client):
    labels_a = [0, 1, 2, 3, 0, 1, 2, 3, 1, 2, 0, 3]
    labels_b = [0, 1, 3, 3, 0, 2, 2, 3, 1, 1, 0, 2]
    run_v1, items, analyst = calibrated_run(judge_labels=labels_a, human_labels=[], queries=4)
    v1 = run_v1.judge_version.policy_version
    people = [UserFactory(username=f"rev{k}", roles=["reviewer"]) for k in range(2)]
    queue = review_queue_create(name="Overlap queue", sample=run_v1.sample, policy_version=v1, reviewers=people,
                                overlap=2, user=analyst)
    for person, values in zip(people, (labels_a, labels_b)):
        HumanLabel.objects.bulk_create(HumanLabel(item=i, reviewer=person, queue=queue, policy_version=v1,
                                                  rubric_hash=v1.rubric_hash, labels={"relevance": v})
                                       for i, v in zip(items, values))
    # The runs the dashboard shows are under v2; the overlapping labels were all made under v1.
    v2 = publish_next(v1, text=v1.text + "\n## Clarified\n\nMore words.\n")
    run_v2 = import_run(v2, run_v1.sample, items, labels_b, analyst, "judge-v2")
    client.force_login(analyst)

    html = client.get(f"/calibration/?policy={v1.policy_id}&metric=exact").content.decode()
    assert 'id="ceiling-value">0.667<' in html  # 8 of 12 items, rev0 vs rev1
    assert "on 12 items over 4 queries labelled by two or more of 2 people" in html
    assert f"24 labels by 2 people under {v1.policy.name} v1, queue “Overlap queue”" in html

    run_page = client.get(f"/calibration/runs/{run_v2.pk}/?metric=exact").content.decode()
    assert "Human–human ceiling on this run's items" in run_page and 'id="ceiling-value">0.667<' in run_page


def test_the_ceiling_says_why_when_no_item_has_two_labels(client):
    run, items, analyst = calibrated_run(judge_labels=[0, 1, 2, 3], human_labels=[[0, 1, 2, 3]])
    client.force_login(analyst)
    html = client.get(f"/calibration/runs/{run.pk}/").content.decode()
    assert "no item of these runs has two human labels yet" in html


def test_the_heatmap_cell_lists_who_labelled_what(client):
    run, items, analyst = calibrated_run(judge_labels=[3, 0], human_labels=[[0, 0], [1, 0]])
    client.force_login(analyst)
    html = client.get(f"/calibration/runs/{run.pk}/cell/?dimension=relevance&a=3&b=0").content.decode()
    assert "<strong>human0</strong>: 0" in html and "<strong>human1</strong>: 1" in html
    assert "consensus 0 from 2 labels" in html


def test_every_interval_names_its_queries_and_few_are_flagged(client):
    run, items, analyst = calibrated_run(judge_labels=[0, 1, 2, 3, 0, 1, 2, 3], human_labels=[[0, 1, 2, 2, 0, 1, 3, 3]],
                                         queries=4)
    client.force_login(analyst)
    for url in (f"/calibration/?policy={run.judge_version.policy_version.policy_id}", f"/calibration/runs/{run.pk}/"):
        html = client.get(url).content.decode()
        assert "] · 4 queries</small>" in html, url
        assert "few queries" in html and "only 4 queries: the interval resamples queries" in html, url
    snap, _ = client.get(f"/calibration/runs/{run.pk}/").context["snapshots"][0]
    assert snap.ci_method.startswith("BCa over 4 queries")


def test_the_page_opens_on_the_most_recently_judged_policy(client):
    published_version(traffic_surface("aaa-empty"))  # alphabetically first, never judged
    older, _, _ = calibrated_run(judge_labels=[0, 1], human_labels=[[0, 1]], slug="bbb")
    newer, _, analyst = calibrated_run(judge_labels=[0, 1], human_labels=[[0, 1]], slug="ccc")
    client.force_login(analyst)
    response = client.get("/calibration/")
    assert response.status_code == 200, (response.status_code, response.get("Location"))
    assert response.context["policy"].pk == newer.judge_version.policy_version.policy_id
    assert older.judge_version.policy_version.policy_id != newer.judge_version.policy_version.policy_id


def failed_copy(run, *, ok: int = 0):
    """A run of the same judge on the same sample whose items failed (all but the first `ok`)."""
    new = JudgeRun.objects.create(judge_version=run.judge_version, sample=run.sample, status=JudgeRun.Status.FAILED,
                                  total_items=run.total_items, message="HTTP 400: context length exceeded")
    rows = []
    for n, j in enumerate(Judgment.objects.filter(run=run).order_by("item_id")):
        good = n < ok
        rows.append(Judgment(run=new, item_id=j.item_id, status="ok" if good else "error",
                             labels=j.labels if good else None, error_kind="" if good else "context_length",
                             judge_version=j.judge_version, policy_version=j.policy_version,
                             rubric_hash=j.rubric_hash, item_hash=j.item_hash, cache_key=f"x{n}"))
    Judgment.objects.bulk_create(rows)
    return new


def test_a_rejudge_whose_every_item_failed_is_not_shown_as_agreement(client):
    run, items, analyst = calibrated_run(judge_labels=[3, 3, 0, 0], human_labels=[[0, 0, 0, 0]])
    new = failed_copy(run)
    client.force_login(analyst)
    html = client.get(f"/calibration/compare/{run.pk}/{new.pk}/").content.decode()
    assert 'id="compare-nothing-judged"' in html and "nothing to compare" in html
    assert '<strong id="new-unjudged">4 without a judgment</strong>: 4 errors, 0 missing' in html
    assert "still disagree" not in html and 'id="fixed-count"' not in html


def test_a_partly_failed_rejudge_counts_what_it_could_not_judge(client):
    run, items, analyst = calibrated_run(judge_labels=[3, 3, 0, 0], human_labels=[[0, 0, 0, 0]])
    new = failed_copy(run, ok=1)  # item 0 judged 3 again, items 1-3 failed
    client.force_login(analyst)
    response = client.get(f"/calibration/compare/{run.pk}/{new.pk}/")
    html = response.content.decode()
    diff = response.context["diff"]
    assert (len(diff["fixed"]), len(diff["still"]), len(diff["no_judgment"])) == (0, 1, 1)
    assert '<strong id="no-judgment-count">1</strong> earlier disagreement(s) with no judgment now' in html
    assert "3 without a judgment</strong>: 3 errors, 0 missing" in html


def test_no_calibration_page_view_writes(client):
    run, items, analyst = calibrated_run(judge_labels=[3, 3, 0, 0], human_labels=[[0, 0, 0, 0]])
    new = failed_copy(run, ok=2)
    disagreements_refresh(run=run)
    d = Disagreement.objects.first()
    client.force_login(analyst)
    policy = run.judge_version.policy_version.policy_id
    urls = ["/calibration/", f"/calibration/?policy={policy}", f"/calibration/runs/{run.pk}/",
            f"/calibration/runs/{new.pk}/", f"/calibration/runs/{run.pk}/cell/?dimension=relevance&a=3&b=0",
            f"/calibration/compare/{run.pk}/{new.pk}/", "/calibration/triage/", f"/calibration/triage/{d.pk}/"]
    assert not AgreementSnapshot.objects.exists()
    for url in urls:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200, url
        writes = [q["sql"] for q in queries.captured_queries
                  if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]
        assert writes == [], (url, writes)
    assert not AgreementSnapshot.objects.exists()
    assert Disagreement.objects.filter(run=new).count() == 0


def test_stored_snapshots_are_read_until_labels_change_and_then_recomputed_unsaved(client):
    run, items, analyst = calibrated_run(judge_labels=[0, 1, 2, 3], human_labels=[[0, 1, 2, 0]])
    [stored] = agreement_snapshots(run=run)
    client.force_login(analyst)
    [(shown, _)] = client.get(f"/calibration/runs/{run.pk}/").context["snapshots"]
    assert shown.pk == stored.pk and shown.estimates["exact"] == 0.75
    HumanLabel.objects.filter(item=items[3]).update(is_latest=False)
    HumanLabel.objects.create(item=items[3], reviewer=HumanLabel.objects.first().reviewer, revision=2,
                              policy_version=run.judge_version.policy_version,
                              rubric_hash=run.judge_version.policy_version.rubric_hash, labels={"relevance": 3})
    [(shown, _)] = client.get(f"/calibration/runs/{run.pk}/").context["snapshots"]
    assert shown.pk is None and shown.estimates["exact"] == 1.0
    assert AgreementSnapshot.objects.get().estimates["exact"] == 0.75  # the GET stored nothing


def test_sending_disagreements_to_triage_stores_the_agreement_the_pages_then_read(client):
    run, items, analyst = calibrated_run(judge_labels=[3, 0], human_labels=[[0, 0]])
    client.force_login(analyst)
    assert client.post(f"/calibration/runs/{run.pk}/disagreements/", {"min_distance": "2"}).status_code == 302
    stored = AgreementSnapshot.objects.get(run=run)
    [(shown, _)] = client.get(f"/calibration/runs/{run.pk}/").context["snapshots"]
    assert shown.pk == stored.pk
