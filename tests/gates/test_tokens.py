"""Scoped API tokens: hashed at rest, and every way a token can be wrong answers 401/403 JSON, never 500."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from gates.models import Scope, ScopedToken
from gates.services import GateError, token_create, token_revoke
from tests.factories import UserFactory, traffic_surface

pytestmark = pytest.mark.django_db


def _token(owner, *scopes, **kwargs):
    return token_create(owner=owner, name="ci", scopes=scopes or [Scope.GATE_RUN], user=owner, **kwargs)


def _bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


def test_the_secret_is_stored_only_as_a_hash(analyst):
    token, secret = _token(analyst)
    assert secret.startswith(token.prefix + "_") and len(secret) > 50
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {ScopedToken._meta.db_table}")
        dumped = repr(cursor.fetchall())
    assert secret not in dumped and secret.split("_", 2)[2] not in dumped
    assert token.secret_hash in dumped  # the hash is what is kept


def test_a_token_in_no_header_unknown_or_malformed_is_a_401_json(client, analyst):
    _token(analyst)
    url = "/api/gates/anything/runs"
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Basic abc"},
                    _bearer("sgt_000000000000_" + "A" * 43), _bearer("not-a-token"), _bearer("sgt_" + "x" * 300)):
        response = client.post(url, data="{}", content_type="application/json", headers=headers)
        assert response.status_code == 401, (headers, response.content)
        assert response.json()["error"] == "unauthorized" and response.json()["message"]


def test_a_tampered_secret_with_a_real_prefix_is_refused(client, analyst):
    token, secret = _token(analyst)
    tampered = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    response = client.post("/api/gates/g/runs", data="{}", content_type="application/json", headers=_bearer(tampered))
    assert response.status_code == 401


def test_expired_and_revoked_tokens_are_401_saying_so(client, analyst):
    token, secret = _token(analyst, Scope.GATE_RUN, expires_at=timezone.now() + timedelta(days=1))
    ScopedToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client.post("/api/gates/g/runs", data="{}", content_type="application/json", headers=_bearer(secret))
    assert response.status_code == 401 and response.json()["error"] == "token_expired"

    token, secret = _token(analyst)
    assert token_revoke(token=token, user=analyst) is True
    assert token_revoke(token=token, user=analyst) is False  # once
    response = client.post("/api/gates/g/runs", data="{}", content_type="application/json", headers=_bearer(secret))
    assert response.status_code == 401 and response.json()["error"] == "token_revoked"


def test_a_token_without_the_scope_is_a_403_naming_it(client, analyst):
    _token_read, secret = _token(analyst, Scope.GATE_READ)
    response = client.post("/api/gates/g/runs", data="{}", content_type="application/json", headers=_bearer(secret))
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope" and response.json()["details"]["needed"] == "gate:run"
    response = client.post("/api/traffic/imports?surface=x", data=b"", content_type="application/x-ndjson",
                           headers=_bearer(secret))
    assert response.status_code == 403 and response.json()["details"]["needed"] == "traffic:import"


def test_a_token_outlives_neither_its_owner_nor_their_role(client, analyst):
    _t, secret = _token(analyst)
    analyst.groups.clear()
    response = client.post("/api/gates/g/runs", data="{}", content_type="application/json", headers=_bearer(secret))
    assert response.status_code == 403 and "no longer an analyst" in response.json()["message"]
    analyst.is_active = False
    analyst.save()
    response = client.post("/api/gates/g/runs", data="{}", content_type="application/json", headers=_bearer(secret))
    assert response.status_code == 401


def test_a_surface_bound_token_cannot_import_into_another_surface(client, analyst):
    mine, other = traffic_surface("mine"), traffic_surface("other")
    _t, secret = _token(analyst, Scope.TRAFFIC_IMPORT, surface=mine)
    response = client.post(f"/api/traffic/imports?surface={other.slug}", data=b"{}\n",
                           content_type="application/x-ndjson", headers=_bearer(secret))
    assert response.status_code == 403 and response.json()["error"] == "wrong_surface"


def test_the_traffic_import_endpoint_imports_all_or_nothing(client, analyst):
    from tests.factories import jsonl_bytes, traffic_row
    from traffic.models import TrafficImport

    surface = traffic_surface("imports")
    _t, secret = _token(analyst, Scope.TRAFFIC_IMPORT, surface=surface)
    good = jsonl_bytes([traffic_row(rank=1), traffic_row(rank=2, doc_id="d2")])
    url = f"/api/traffic/imports?surface={surface.slug}&format=jsonl&filename=cand.jsonl"
    response = client.post(url, data=good, content_type="application/x-ndjson", headers=_bearer(secret))
    assert response.status_code == 201, response.content
    assert response.json()["rows"] == 2
    again = client.post(url, data=good, content_type="application/x-ndjson", headers=_bearer(secret))
    assert again.status_code == 200 and again.json()["created"] is False
    bad = jsonl_bytes([traffic_row(rank=1, doc_id="d9"), traffic_row(variant="nope", rank=2)])
    response = client.post(url, data=bad, content_type="application/x-ndjson", headers=_bearer(secret))
    assert response.status_code == 422 and response.json()["details"]["line"] == 2
    assert TrafficImport.objects.filter(surface=surface).count() == 1


def test_last_used_is_recorded(client, analyst):
    token, secret = _token(analyst, Scope.GATE_READ)
    assert token.last_used_at is None
    client.get("/api/gates/none/runs/1", headers=_bearer(secret))
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_only_admins_make_tokens_for_others_and_owners_must_be_analysts(analyst, reviewer, admin_user):
    other = UserFactory(username="olga", roles=["analyst"])
    with pytest.raises(GateError, match="Only admins"):
        token_create(owner=other, name="x", scopes=[Scope.GATE_RUN], user=analyst)
    token, _ = token_create(owner=other, name="x", scopes=[Scope.GATE_RUN], user=admin_user)
    assert token.owner == other and token.created_by == admin_user
    with pytest.raises(GateError, match="not an analyst"):
        token_create(owner=reviewer, name="x", scopes=[Scope.GATE_RUN], user=admin_user)
    with pytest.raises(GateError, match="Only the token's owner or an admin"):
        token_revoke(token=token, user=analyst)
    with pytest.raises(GateError, match="Choose scopes"):
        token_create(owner=analyst, name="x", scopes=["root"], user=analyst)


def test_the_command_creates_lists_and_revokes(analyst, capsys):
    call_command("gate_token", "create", analyst.username, "--name", "gitlab", "--scope", "gate:run",
                 "--scope", "traffic:import", "--days", "30")
    secret = capsys.readouterr().out.strip()
    token = ScopedToken.objects.get(name="gitlab")
    assert secret.startswith(token.prefix) and token.scopes == ["gate:run", "traffic:import"]
    assert token.expires_at is not None
    call_command("gate_token", "list")
    listing = capsys.readouterr().out
    assert token.prefix in listing and secret not in listing and "active" in listing
    call_command("gate_token", "revoke", token.prefix)
    token.refresh_from_db()
    assert token.revoked_at is not None
