"""POST /api/gates/<name>/runs and GET …/runs/<id>: real comparisons over planted rankings."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from gates.models import GateRun, Scope
from gates.services import gate_run_refresh, token_create
from tests.gates.helpers import gate_world, traffic_file
from traffic.models import TrafficImport, Variant

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]  # the traffic import takes per-database paths


@pytest.fixture
def world():
    return gate_world()


def _secret(owner, *scopes, surface=None) -> str:
    return token_create(owner=owner, name="ci", scopes=scopes, surface=surface, user=owner)[1]


def _post(client, gate, secret, **body):
    return client.post(f"/api/gates/{gate.name}/runs", data=body, content_type="application/json",
                       headers={"Authorization": f"Bearer {secret}"})


def test_a_run_starts_with_202_and_its_report_says_regression(client, world, django_capture_on_commit_callbacks):
    gate, analyst = world
    secret = _secret(analyst, Scope.GATE_RUN)
    with django_capture_on_commit_callbacks(execute=False):
        response = _post(client, gate, secret, candidate="worse")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "running" and body["url"].endswith(f"/api/gates/{gate.name}/runs/{body['run']}")
    assert response["Location"] == body["url"] and "/comparisons/" in body["comparison"]
    run = GateRun.objects.get(pk=body["run"])
    assert run.source == "api" and run.token.name == "ci" and run.created_by == analyst

    gate_run_refresh(run_id=run.pk)  # what the follow task does on the worker
    report = client.get(body["url"], headers={"Authorization": f"Bearer {secret}"}).json()
    assert report["status"] == "regression" and report["exit_code"] == 1
    ndcg = report["metrics"]["ndcg@5"]
    assert ndcg["verdict"] == "regression" and ndcg["delta"] < 0 and ndcg["ci_low"] <= ndcg["delta"] <= ndcg["ci_high"]
    assert report["comparison"]["url"].startswith("http://testserver/comparisons/")
    assert report["coverage"] == 1.0 and report["queries"] == 12


def test_a_read_only_token_reads_the_report_but_cannot_start_runs(client, world):
    gate, analyst = world
    run_secret, read_secret = _secret(analyst, Scope.GATE_RUN), _secret(analyst, Scope.GATE_READ)
    run_id = _post(client, gate, run_secret, candidate="better").json()["run"]
    assert _post(client, gate, read_secret, candidate="better").status_code == 403
    response = client.get(f"/api/gates/{gate.name}/runs/{run_id}", headers={"Authorization": f"Bearer {read_secret}"})
    assert response.status_code == 200 and response.json()["run"] == run_id


def test_another_surfaces_token_gets_403_for_this_gate(client, world):
    gate, analyst = world
    from tests.factories import traffic_surface

    secret = _secret(analyst, Scope.GATE_RUN, surface=traffic_surface("elsewhere"))
    response = _post(client, gate, secret, candidate="worse")
    assert response.status_code == 403 and response.json()["error"] == "wrong_surface"
    assert not GateRun.objects.exists()


def test_bad_requests_are_json_errors_and_start_nothing(client, world):
    gate, analyst = world
    secret = _secret(analyst, Scope.GATE_RUN)
    auth = {"Authorization": f"Bearer {secret}"}
    cases = [
        (client.post(f"/api/gates/{gate.name}/runs", data=b"{", content_type="application/json", headers=auth), 400),
        (client.post(f"/api/gates/{gate.name}/runs", data=b"[]", content_type="application/json", headers=auth), 400),
        (_post(client, gate, secret), 400),
        (_post(client, gate, secret, candidate=7), 400),
        (_post(client, gate, secret, candidate="nobody"), 404),
        (_post(client, gate, secret, candidate="control"), 400),  # the baseline itself
        (client.post("/api/gates/no-such-gate/runs", data={"candidate": "x"}, content_type="application/json",
                     headers=auth), 404),
        (client.get(f"/api/gates/{gate.name}/runs", headers=auth), 405),
        (client.get(f"/api/gates/{gate.name}/runs/99999", headers=auth), 404),
    ]
    for response, status in cases:
        assert response.status_code == status, response.content
        assert response.json()["error"] and response.json()["message"]
    assert not GateRun.objects.exists()


def test_a_retried_post_with_the_same_client_key_returns_the_first_run(client, world):
    gate, analyst = world
    secret = _secret(analyst, Scope.GATE_RUN)
    first = _post(client, gate, secret, candidate="same", client_key="pipeline-881")
    again = _post(client, gate, secret, candidate="same", client_key="pipeline-881")
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["run"] == again.json()["run"] and GateRun.objects.count() == 1


def test_the_candidates_traffic_comes_in_the_same_request(client, world):
    gate, analyst = world
    both = _secret(analyst, Scope.GATE_RUN, Scope.TRAFFIC_IMPORT)
    upload = SimpleUploadedFile("fresh.jsonl", traffic_file("fresh", ["d0", "d1", "d2", "d3", "d4"]))
    response = client.post(f"/api/gates/{gate.name}/runs", data={"candidate": "fresh", "traffic": upload},
                           headers={"Authorization": f"Bearer {both}"})
    assert response.status_code == 202, response.content
    assert response.json()["traffic_import"]["rows"] == 60 and response.json()["traffic_import"]["created"] is True
    run = GateRun.objects.get(pk=response.json()["run"])
    assert run.candidate.name == "fresh" and run.traffic_import is not None
    assert gate_run_refresh(run_id=run.pk).status == "passed"


def test_a_traffic_file_needs_the_import_scope(client, world):
    gate, analyst = world
    secret = _secret(analyst, Scope.GATE_RUN)
    upload = SimpleUploadedFile("fresh.jsonl", traffic_file("fresh", ["d0"]))
    response = client.post(f"/api/gates/{gate.name}/runs", data={"candidate": "fresh", "traffic": upload},
                           headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 403 and response.json()["details"]["needed"] == "traffic:import"
    assert not Variant.objects.filter(name="fresh").exists()


def test_a_bad_traffic_file_is_refused_whole_and_leaves_no_variant(client, world):
    gate, analyst = world
    secret = _secret(analyst, Scope.GATE_RUN, Scope.TRAFFIC_IMPORT)
    content = traffic_file("fresh", ["d0", "d1"]) + b'{"variant": "fresh", "query": "q", "rank": "x"}\n'
    before = TrafficImport.objects.count()
    response = client.post(f"/api/gates/{gate.name}/runs",
                           data={"candidate": "fresh", "traffic": SimpleUploadedFile("bad.jsonl", content)},
                           headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 422, response.content
    assert response.json()["error"] == "invalid_traffic" and response.json()["details"]["line"] == 25
    assert TrafficImport.objects.count() == before and not Variant.objects.filter(name="fresh").exists()
    assert not GateRun.objects.exists()
