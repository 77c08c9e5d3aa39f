import pytest

from calibration.models import Disagreement
from calibration.services import disagreements_refresh
from tests.calibration.helpers import calibrated_run

pytestmark = pytest.mark.django_db


def test_the_dashboard_shows_runs_with_cis_and_a_trend_chart(client):
    run, items, analyst = calibrated_run(judge_labels=[0, 1, 2, 3, 0, 1, 2, 3], human_labels=[[0, 1, 2, 2, 0, 1, 3, 3]],
                                         queries=4)
    client.force_login(analyst)
    response = client.get(f"/calibration/?policy={run.judge_version.policy_version.policy_id}")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-vega-spec="trend-spec"' in html and 'id="trend-spec"' in html and "vega-embed.min.js" in html
    assert f"#{run.pk}" in html and "0.750" in html  # exact agreement 6/8


def test_the_run_page_has_a_heatmap_per_dimension_and_drills_down(client):
    run, items, analyst = calibrated_run(judge_labels=[0, 1, 2, 3], human_labels=[[0, 1, 2, 0]])
    client.force_login(analyst)
    html = client.get(f"/calibration/runs/{run.pk}/").content.decode()
    assert 'data-vega-spec="confusion-relevance"' in html
    cell = client.get(f"/calibration/runs/{run.pk}/cell/?dimension=relevance&a=3&b=0").content.decode()
    assert "judge says 3" in cell


def test_untrusted_text_is_escaped_on_the_triage_page(client):
    run, items, analyst = calibrated_run(judge_labels=[3, 0], human_labels=[[0, 0]])
    doc = items[0].document
    doc.body = "<script>alert('triage')</script>"
    doc.save()
    disagreements_refresh(run=run)
    client.force_login(analyst)
    html = client.get(f"/calibration/triage/{Disagreement.objects.get().pk}/").content.decode()
    assert "<script>alert('triage')</script>" not in html and "&lt;script&gt;" in html


def test_triage_filters_by_run_dimension_and_distance(client):
    run, items, analyst = calibrated_run(judge_labels=[3, 1, 0, 0], human_labels=[[0, 0, 0, 0]])
    disagreements_refresh(run=run)
    client.force_login(analyst)
    assert len(client.get(f"/calibration/triage/?run={run.pk}").context["page"]) == 2
    assert len(client.get(f"/calibration/triage/?run={run.pk}&min_distance=2").context["page"]) == 1
    assert len(client.get("/calibration/triage/?dimension=other").context["page"]) == 0


def test_resolving_from_the_page_and_errors_in_place(client):
    run, items, analyst = calibrated_run(judge_labels=[3, 0], human_labels=[[0, 0]])
    disagreements_refresh(run=run)
    d = Disagreement.objects.get()
    client.force_login(analyst)
    response = client.post(f"/calibration/triage/{d.pk}/", {"resolution": "policy_ambiguous", "note": "why"})
    assert "Write the clarification" in response.content.decode()
    response = client.post(f"/calibration/triage/{d.pk}/", {"resolution": "judge_wrong", "note": "keyword match",
                                                            "accept_precedent": "1"})
    assert response.status_code == 302
    d.refresh_from_db()
    assert d.status == "resolved" and d.decision.precedent is not None
