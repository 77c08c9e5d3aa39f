"""The traffic page, upload form, REST endpoint and management command."""


import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from sage.services import api_token_create
from traffic.models import ResultEntry, Sample, TrafficImport, Variant
from tests.factories import jsonl_bytes, ranked_traffic, traffic_row, traffic_surface

pytestmark = pytest.mark.django_db


def test_the_page_states_the_row_format(client, analyst):
    traffic_surface()
    client.force_login(analyst)
    html = client.get("/traffic/").content.decode()
    assert "Row format" in html and "doc_id" in html and "100,000" in html


def test_an_analyst_uploads_a_file(client, analyst):
    surface = traffic_surface()
    client.force_login(analyst)
    upload = SimpleUploadedFile("t.jsonl", jsonl_bytes([traffic_row(), traffic_row(rank=2, doc_id="d2", body="b")]))
    response = client.post("/traffic/imports/", {"surface": surface.pk, "file": upload})
    assert response.status_code == 302
    assert TrafficImport.objects.get().created_by == analyst and ResultEntry.objects.count() == 2


def test_a_bad_upload_shows_the_line_and_reason(client, analyst):
    surface = traffic_surface()
    client.force_login(analyst)
    upload = SimpleUploadedFile("t.jsonl", jsonl_bytes([traffic_row(), traffic_row(variant="ghost", rank=2)]))
    response = client.post("/traffic/imports/", {"surface": surface.pk, "file": upload})
    assert response.status_code == 400
    assert "line 2: unknown variant" in response.content.decode()
    assert not TrafficImport.objects.exists()


def test_a_reviewer_cannot_upload(client, reviewer):
    surface = traffic_surface()
    client.force_login(reviewer)
    upload = SimpleUploadedFile("t.jsonl", jsonl_bytes([traffic_row()]))
    assert client.post("/traffic/imports/", {"surface": surface.pk, "file": upload}).status_code == 403
    assert "Import traffic" not in client.get("/traffic/").content.decode()


def test_the_api_imports_a_raw_body_with_a_token(client, analyst):
    surface = traffic_surface()
    _token, key = api_token_create(user=analyst, name="ci")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    body = jsonl_bytes([traffic_row()])
    url = f"/traffic/api/imports/?surface={surface.slug}&format=jsonl"
    first = client.post(url, data=body, content_type="application/x-ndjson", **auth)
    assert first.status_code == 201 and first.json()["rows"] == 1
    again = client.post(url, data=body, content_type="application/x-ndjson", **auth)
    assert again.status_code == 200 and again.json()["created"] is False


def test_the_api_takes_multipart_and_reports_bad_rows(client, analyst):
    surface = traffic_surface()
    _token, key = api_token_create(user=analyst, name="ci")
    upload = SimpleUploadedFile("t.csv", b"variant,query,rank,doc_id,body\ncontrol,q,1,d1,\n")
    response = client.post(f"/traffic/api/imports/?surface={surface.slug}", {"file": upload},
                           HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 422
    assert response.json()["details"] == {"line": 2} and "missing field 'body'" in response.json()["message"]


def test_the_api_refuses_a_reviewer(client, reviewer):
    surface = traffic_surface()
    _token, key = api_token_create(user=reviewer, name="x")
    response = client.post(f"/traffic/api/imports/?surface={surface.slug}&format=jsonl", data=b"",
                           content_type="application/x-ndjson", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 403


def test_the_command_imports_and_is_idempotent(tmp_path, capsys):
    surface = traffic_surface()
    path = tmp_path / "t.jsonl"
    path.write_bytes(jsonl_bytes([traffic_row(), traffic_row(rank=2, doc_id="d2", body="b")]))
    call_command("import_traffic", str(path), "--surface", surface.slug, "--no-progress")
    call_command("import_traffic", str(path), "--surface", surface.slug, "--no-progress")
    out = capsys.readouterr().out
    assert "Imported 2 rows" in out and "already imported" in out


def test_the_command_fails_on_a_bad_row(tmp_path):
    surface = traffic_surface()
    path = tmp_path / "t.jsonl"
    path.write_bytes(jsonl_bytes([traffic_row(rank="x")]))
    with pytest.raises(CommandError, match="line 1: rank must be"):
        call_command("import_traffic", str(path), "--surface", surface.slug, "--no-progress")


def test_an_analyst_adds_a_variant_and_draws_a_sample(client, analyst):
    surface = traffic_surface()
    ranked_traffic(surface)
    client.force_login(analyst)
    assert client.post("/traffic/variants/", {"surface": surface.pk, "name": "new-ranker", "role": "treatment",
                                              "ramp_percent": "5"}).status_code == 302
    assert Variant.objects.filter(name="new-ranker").exists()
    response = client.post("/traffic/samples/", {"surface": surface.pk, "name": "U5", "strategy": "uniform",
                                                 "seed": 3, "size": 5})
    sample = Sample.objects.get(name="U5")
    assert response.status_code == 302 and sample.item_count == 5 and sample.params == {"size": 5}
    page = client.get(f"/traffic/samples/{sample.pk}/").content.decode()
    assert "U5" in page and "frozen" in page
