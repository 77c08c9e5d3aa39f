"""Gate pages: analysts create, edit and run gates; others read; tokens are made and revoked on a page."""

import pytest

from gates.models import Gate, GateRun, ScopedToken
from gates.services import gate_run_refresh
from tests.factories import UserFactory
from tests.gates.helpers import gate_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    return gate_world()


def _form(gate: Gate, **changes) -> dict:
    data = {"name": "second-gate", "description": "", "surface": gate.surface_id, "baseline": gate.baseline_id,
            "judge_version": gate.judge_version_id, "k": 5, "metrics": "ndcg@k -0.02\nmean_relevance@5 0.1",
            "alpha": 0.05, "sample_kind": "all", "sample_size": "", "sample_seed": 1, "sample": "",
            "min_coverage": 0.9, "timeout_s": 600}
    data.update(changes)
    return data


def test_an_analyst_creates_a_gate_and_k_is_filled_into_metric_names(client, world):
    gate, analyst = world
    client.force_login(analyst)
    response = client.post("/gates/new/", _form(gate))
    created = Gate.objects.get(name="second-gate")
    assert response.status_code == 302 and response["Location"] == f"/gates/{created.pk}/"
    assert created.metrics == {"ndcg@5": -0.02, "mean_relevance@5": 0.1} and created.created_by == analyst


@pytest.mark.parametrize(("changes", "message"), [
    ({"metrics": "ndcg@20 -0.02"}, "beyond the gate&#x27;s k"),
    ({"metrics": "recall@5 -0.02"}, "Unknown metric"),
    ({"metrics": "defect_rate@5:safety 0.01"}, "no dimension"),
    ({"metrics": "ndcg@5"}, "write &#x27;metric threshold&#x27;"),
    ({"name": "web-gate"}, "exists already"),
    ({"sample_kind": "random"}, "needs its number of queries"),
])
def test_a_bad_gate_is_refused_with_the_reason_and_nothing_saved(client, world, changes, message):
    gate, analyst = world
    client.force_login(analyst)
    response = client.post("/gates/new/", _form(gate, **changes))
    assert response.status_code == 400 and message in response.content.decode()
    assert Gate.objects.count() == 1


def test_editing_keeps_the_name(client, world):
    gate, analyst = world
    client.force_login(analyst)
    response = client.post(f"/gates/{gate.pk}/edit/", _form(gate, name="renamed", metrics="ndcg@5 -0.05"))
    assert response.status_code == 302
    gate.refresh_from_db()
    assert gate.name == "web-gate" and gate.metrics == {"ndcg@5": -0.05}


def test_a_reviewer_reads_gates_but_gets_no_forms_and_a_403_on_post(client, world):
    gate, _ = world
    client.force_login(UserFactory(username="rita", roles=["reviewer"]))
    assert 'id="gates-role-note"' in client.get("/gates/").content.decode()
    detail = client.get(f"/gates/{gate.pk}/").content.decode()
    assert 'id="gate-run-form"' not in detail and 'id="gate-role-note"' in detail
    assert 'id="gate-form"' not in client.get("/gates/new/").content.decode()
    assert client.post(f"/gates/{gate.pk}/runs/", {"candidate": gate.baseline_id}).status_code == 403
    assert client.post("/gates/new/", _form(gate)).status_code == 403
    assert 'id="tokens-role-note"' in client.get("/gates/tokens/").content.decode()
    assert client.post("/gates/tokens/new/", {"name": "x", "scopes": ["gate:run"]}).status_code == 403


def test_a_run_from_the_page_shows_its_verdicts(client, world):
    gate, analyst = world
    client.force_login(analyst)
    worse = gate.surface.variants.get(name="worse")
    response = client.post(f"/gates/{gate.pk}/runs/", {"candidate": worse.pk})
    run = GateRun.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/gates/runs/{run.pk}/"
    assert run.source == "ui"
    gate_run_refresh(run_id=run.pk)
    html = client.get(f"/gates/runs/{run.pk}/").content.decode()
    assert 'data-status="regression"' in html and "ndcg@5" in html and f"/comparisons/{run.comparison_id}/" in html
    fragment = client.get(f"/gates/runs/{run.pk}/", headers={"HX-Request": "true"}).content.decode()
    assert 'id="gate-run-status"' in fragment and "<html" not in fragment


def test_a_token_is_shown_once_and_revoked_from_the_page(client, world):
    _gate, analyst = world
    client.force_login(analyst)
    response = client.post("/gates/tokens/new/", {"name": "github-ci", "scopes": ["gate:run", "traffic:import"],
                                                  "expires_in_days": 30})
    html = response.content.decode()
    token = ScopedToken.objects.get(name="github-ci")
    secret = html.split('id="token-secret">')[1].split("<")[0]
    assert secret.startswith(token.prefix) and response["Cache-Control"] == "no-store"
    listing = client.get("/gates/tokens/").content.decode()
    assert token.prefix in listing and secret not in listing
    response = client.post(f"/gates/tokens/{token.pk}/revoke/")
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_analysts_see_and_revoke_only_their_own_tokens(client, world):
    _gate, analyst = world
    other = UserFactory(username="olga", roles=["analyst"])
    from gates.services import token_create

    theirs, _ = token_create(owner=other, name="olgas", scopes=["gate:run"], user=other)
    client.force_login(analyst)
    assert "olgas" not in client.get("/gates/tokens/").content.decode()
    assert client.post(f"/gates/tokens/{theirs.pk}/revoke/").status_code == 404
    admin = UserFactory(username="ada", roles=["admin"])
    client.force_login(admin)
    assert "olgas" in client.get("/gates/tokens/").content.decode()
    assert client.post(f"/gates/tokens/{theirs.pk}/revoke/").status_code == 302
