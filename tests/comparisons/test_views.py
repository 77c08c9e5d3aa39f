"""The comparison pages: list and form, the comparison page, its drill-down, history; roles and bad input."""

from __future__ import annotations

import pytest

from comparisons.models import Comparison
from comparisons.services import comparison_create, comparison_refresh
from tests.comparisons.helpers import comparison_traffic, imported_judge
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

Q, D = 8, 3


def _done(slug="cmp-views"):
    surface = comparison_traffic(slug=slug, queries=Q, depth=D)
    judge, analyst = imported_judge(surface, grade=lambda v, q, r: 3 if v == "control" or r == 1 else 0, queries=Q, depth=D)
    comparison = comparison_create(surface=surface, control=surface.variants.get(name="control"),
                                   treatment=surface.variants.get(name="treatment"), judge_version=judge, k=D,
                                   user=analyst)
    return comparison_refresh(comparison_id=comparison.pk), analyst


def test_the_comparison_page_shows_the_metric_table_chart_and_queries(client):
    comparison, analyst = _done()
    client.force_login(analyst)
    html = client.get(comparison.get_absolute_url()).content.decode()
    assert 'id="metric-table"' in html and 'data-metric="ndcg@3"' in html and 'data-verdict="regression"' in html
    assert 'id="delta-spec"' in html and 'id="query-table"' in html and "Holm" in html
    assert html.count('class="query-link"') == Q and 'id="slice-form"' in html


def test_the_drill_down_shows_both_lists_with_grades_and_moves(client):
    comparison, analyst = _done()
    client.force_login(analyst)
    query_id = comparison.results["per_query"][0]["query_id"]
    html = client.get(f"/comparisons/{comparison.pk}/queries/{query_id}/").content.decode()
    assert 'id="control-list"' in html and 'id="treatment-list"' in html
    assert "relevance=3" in html and "relevance=0" in html and ">new<" in html and "same rank" in html
    assert client.get(f"/comparisons/{comparison.pk}/queries/999999/").status_code == 404


def test_the_query_table_is_paged_and_the_drill_down_reads_one_query(client, monkeypatch):
    from comparisons import views

    monkeypatch.setattr(views, "QUERIES_PER_PAGE", 3)
    comparison, analyst = _done()
    client.force_login(analyst)
    first = client.get(comparison.get_absolute_url()).content.decode()
    assert first.count('class="query-link"') == 3 and "Queries 1–3 of 8" in first and "page=2#queries" in first
    last = client.get(comparison.get_absolute_url() + "?metric=ndcg@3&page=3").content.decode()
    assert last.count('class="query-link"') == 2 and "Queries 7–8 of 8" in last

    from comparisons.services import comparison_rankings
    query_id = comparison.results["per_query"][0]["query_id"]
    one, _texts = comparison_rankings(comparison, only_query=query_id)
    every, _texts = comparison_rankings(comparison)
    assert {q for lists in one.values() for q in lists} == {query_id}
    assert all(one[v][query_id] == every[v][query_id] for v in one)


def test_an_analyst_starts_a_comparison_from_the_form(client):
    comparison, analyst = _done()
    client.force_login(analyst)
    response = client.post("/comparisons/new/", {
        "control": comparison.control_id, "treatment": comparison.treatment_id, "judge_version": comparison.judge_version_id,
        "k": D, "metrics": ["ndcg@k"], "seed": 1, "alpha": 0.05, "name": "from the form"})
    assert response.status_code == 302, response.content.decode()[:2000]
    created = Comparison.objects.get(name="from the form")
    assert response["Location"] == created.get_absolute_url() and created.metrics == ["ndcg@3"]


def test_a_refused_comparison_is_shown_in_the_form_and_nothing_is_saved(client):
    comparison, analyst = _done()
    client.force_login(analyst)
    response = client.post("/comparisons/new/", {
        "control": comparison.control_id, "treatment": comparison.control_id, "judge_version": comparison.judge_version_id,
        "k": D, "metrics": ["ndcg@k"], "seed": 1, "alpha": 0.05, "defect_dimensions": ""})
    assert response.status_code == 422 and "two different variants" in response.content.decode()
    assert Comparison.objects.count() == 1


def test_a_reviewer_sees_comparisons_but_no_forms_and_cannot_post(client):
    comparison, _analyst = _done()
    client.force_login(UserFactory(username="rita", roles=["reviewer"]))
    index = client.get("/comparisons/").content.decode()
    assert 'id="comparison-form"' not in index and 'id="comparison-role-note"' in index
    page = client.get(comparison.get_absolute_url()).content.decode()
    assert 'id="slice-form"' not in page and 'id="metric-table"' in page
    assert client.post("/comparisons/new/", {}).status_code == 403
    assert client.post(f"/comparisons/{comparison.pk}/review-slice/", {}).status_code == 403
    assert client.post(f"/comparisons/{comparison.pk}/recompute/").status_code == 403


def test_the_history_charts_a_treatments_comparisons(client):
    comparison, analyst = _done()
    client.force_login(analyst)
    html = client.get(f"/comparisons/history/?treatment={comparison.treatment_id}").content.decode()
    assert 'id="history-spec"' in html and f'"comparison": {comparison.pk}' in html
    assert client.get("/comparisons/history/?treatment=abc").status_code == 200


def test_query_text_is_escaped(client):
    comparison, analyst = _done()
    Comparison.objects.filter(pk=comparison.pk).update(name="<script>alert(1)</script>")
    client.force_login(analyst)
    html = client.get(comparison.get_absolute_url()).content.decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
