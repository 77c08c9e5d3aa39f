import io
import json

import pytest

from precedent.models import Precedent
from tests.policy_factories import publish_policy
from tests.precedent_factories import make_precedent

pytestmark = pytest.mark.django_db
PAYLOAD = '<script>alert("xss")</script><img src=x onerror=alert(1)>'


def test_a_script_in_a_precedent_renders_inert(client, reviewer):
    v1 = publish_policy()
    p = make_precedent(v1.policy, query=PAYLOAD, body=PAYLOAD, rationale=PAYLOAD)
    client.force_login(reviewer)
    for url in (f"/precedents/{p.pk}/", "/precedents/"):
        html = client.get(url).content.decode()
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(&quot;xss&quot;)&lt;/script&gt;" in html


def test_filters_narrow_the_list(client, reviewer):
    v1 = publish_policy()
    make_precedent(v1.policy, query="fleas", labels={"relevance": 3}, tags=["pets"], clause="scope")
    make_precedent(v1.policy, query="spinach", labels={"relevance": 0}, accept=False)
    client.force_login(reviewer)

    def queries(params: str) -> list[str]:
        return [p.query for p in client.get(f"/precedents/?{params}").context["page"]]

    assert queries("status=accepted") == ["fleas"]
    assert queries("status=proposed") == ["spinach"]
    assert queries("label=relevance%3D0") == ["spinach"]
    assert queries("tag=pets") == ["fleas"]
    assert queries("clause=scope") == ["fleas"]
    assert queries("q=spin") == ["spinach"]


def test_the_filter_form_gets_just_the_results_fragment_with_htmx(client, reviewer):
    v1 = publish_policy()
    make_precedent(v1.policy)
    client.force_login(reviewer)
    html = client.get("/precedents/?status=accepted", headers={"HX-Request": "true", "HX-Target": "results"}).content.decode()
    assert html.lstrip().startswith('<div id="results">') and "<html" not in html


def test_bulk_accept_and_retire(client, reviewer):
    v1 = publish_policy()
    a = make_precedent(v1.policy, query="a", accept=False)
    b = make_precedent(v1.policy, query="b", accept=False)
    client.force_login(reviewer)
    client.post("/precedents/bulk/", {"ids": [a.pk, b.pk], "action": "accept"})
    assert set(Precedent.objects.values_list("status", flat=True)) == {"accepted"}
    client.post("/precedents/bulk/", {"ids": [a.pk], "action": "retire"})
    a.refresh_from_db()
    assert a.status == "retired"


def test_analysts_can_read_but_not_curate(client, analyst):
    v1 = publish_policy()
    p = make_precedent(v1.policy, accept=False)
    client.force_login(analyst)
    assert client.get("/precedents/").status_code == 200
    assert client.get("/precedents/new/").status_code == 403
    client.post("/precedents/bulk/", {"ids": [p.pk], "action": "accept"})
    p.refresh_from_db()
    assert p.status == "proposed"


def test_creating_through_the_form(client, reviewer):
    v1 = publish_policy()
    client.force_login(reviewer)
    response = client.post(f"/precedents/new/?policy={v1.policy_id}", {
        "policy": v1.policy_id, "query": "fleas", "body": "30-90 days", "rationale": "exact answer",
        "label_relevance": "3", "clause": "perfectly-relevant-3", "tags": "pets, insects", "accept": "1"})
    p = Precedent.objects.get()
    assert response.status_code == 302
    assert (p.labels, p.tags, p.status, p.clause) == ({"relevance": 3}, ["pets", "insects"], "accepted", "perfectly-relevant-3")


def test_the_import_page_reports_bad_rows_and_imports_nothing(client, reviewer):
    v1 = publish_policy()
    client.force_login(reviewer)
    body = "\n".join([json.dumps({"query": "q", "body": "b", "labels": {"relevance": 3}, "rationale": "r"}),
                      json.dumps({"query": "q", "body": "b", "labels": {"relevance": 5}, "rationale": "r"})])
    upload = io.BytesIO(body.encode())
    upload.name = "p.jsonl"
    response = client.post("/precedents/import/", {"policy": v1.policy_id, "file": upload})
    html = response.content.decode()
    assert response.status_code == 422
    assert "relevance: 5 is outside the scale 0-3" in html and "Nothing was imported" in html
    assert not Precedent.objects.exists()


def test_export_streams_jsonl(client, reviewer):
    v1 = publish_policy()
    make_precedent(v1.policy, query="fleas")
    client.force_login(reviewer)
    response = client.get(f"/precedents/export/?policy={v1.policy_id}&format=jsonl")
    rows = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [r["query"] for r in rows] == ["fleas"]


# --- issue 12: exports follow the page --------------------------------------------------------------

def _export(client, params: str) -> str:
    return b"".join(client.get(f"/precedents/export/?{params}").streaming_content).decode()


def test_export_applies_the_filters_on_the_page(client, reviewer):
    v1 = publish_policy()
    make_precedent(v1.policy, query="fleas", labels={"relevance": 3}, tags=["pets"])
    make_precedent(v1.policy, query="spinach", labels={"relevance": 0}, accept=False)
    client.force_login(reviewer)
    # The filter form swaps only #results with htmx: the export links must be in that fragment.
    html = client.get("/precedents/?status=accepted&tag=pets&page=1",
                      headers={"HX-Request": "true", "HX-Target": "results"}).content.decode()
    assert 'href="/precedents/export/?status=accepted&amp;tag=pets&amp;format=csv"' in html
    rows = [json.loads(line) for line in _export(client, "status=accepted&tag=pets&format=jsonl").splitlines()]
    assert [r["query"] for r in rows] == ["fleas"]
    assert [json.loads(line)["query"] for line in _export(client, "q=spin&format=jsonl").splitlines()] == ["spinach"]


def test_a_csv_export_of_every_policy_keeps_every_label_column(client, reviewer):
    """Before: without a policy filter the columns came from the first policy only."""
    import csv

    from tests.policy_factories import FRESHNESS, rubric_json

    plain = publish_policy()
    fresh = publish_policy(slug="freshness", rubric=rubric_json(FRESHNESS))
    make_precedent(plain.policy, query="fleas", labels={"relevance": 3})
    make_precedent(fresh.policy, query="news", labels={"relevance": 2, "freshness": 1})
    client.force_login(reviewer)
    rows = {r["query"]: r for r in csv.DictReader(io.StringIO(_export(client, "format=csv")))}
    assert rows["news"]["label_freshness"] == "1" and rows["news"]["label_relevance"] == "2"
    assert rows["fleas"]["label_relevance"] == "3" and rows["fleas"]["label_freshness"] == ""
    assert {rows["news"]["policy"], rows["fleas"]["policy"]} == {"relevance", "freshness"}
