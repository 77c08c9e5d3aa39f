"""Hostile bytes on every import and on the forms that save text: NUL characters, invalid UTF-8, 10 MB.

PostgreSQL refuses NUL (U+0000) in text and jsonb, so an import or a form that passed one on would
end in a DataError (a 500) there, and store it silently on SQLite. Every importer names the line and
the field instead ("line 3: field 'query' contains a NUL byte", sage/text.py) and changes nothing:
imports are all-or-nothing. Run on PostgreSQL by `./run test`; the traffic importer's SQLite path
(staging) is its own code, so its cases are `embedded` and run on both.
"""

from __future__ import annotations

import csv
import html
import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from tests.factories import UserFactory, import_traffic_rows, published_version, traffic_row, traffic_surface

pytestmark = pytest.mark.django_db

NUL = "\x00"


def _text(response) -> str:
    return html.unescape(response.content.decode(errors="replace"))


def _jsonl(rows: list[dict]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def _csv(rows: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def _client(user) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"  # the judge import's dry run keeps its upload there


# --- traffic: the web upload, its API and the gates API (SQLite staging and PostgreSQL COPY) ----------

def _traffic_counts():
    from traffic.models import Document, Item, Query, TrafficImport

    return TrafficImport.objects.count(), Item.objects.count(), Query.objects.count(), Document.objects.count()


def _traffic_rows(**line3) -> list[dict]:
    return [traffic_row(rank=1, doc_id="d1"), traffic_row(rank=2, doc_id="d2"), traffic_row(**({"rank": 3, "doc_id": "d3"} | line3))]


TRAFFIC_CASES = {
    # name: (filename, bytes, the message expected)
    "escaped NUL in the query": ("t.jsonl", _jsonl(_traffic_rows(query=f"blanch{NUL}spinach")),
                                 "line 3: field 'query' contains a NUL byte"),
    "escaped NUL in the body": ("t.jsonl", _jsonl(_traffic_rows(body=f"two{NUL}minutes")),
                                "line 3: field 'body' contains a NUL byte"),
    "NUL inside fields": ("t.jsonl", _jsonl(_traffic_rows(fields={"brand": f"a{NUL}"})),
                          "line 3: field 'fields.brand' contains a NUL byte"),
    "NUL in a field name": ("t.jsonl", _jsonl(_traffic_rows(fields={f"br{NUL}and": "a"})),
                            "line 3: a field name contains a NUL byte"),
    "raw NUL byte in a JSON string": (
        "t.jsonl", _jsonl(_traffic_rows()[:2]) + json.dumps(_traffic_rows(title="T")[2]).replace(
            '"T"', '"T\x00"').encode() + b"\n", "line 3: field 'title' contains a NUL byte"),
    "NUL in a CSV cell": ("t.csv", _csv(_traffic_rows(doc_id=f"d{NUL}3")), "line 4: field 'doc_id' contains a NUL byte"),
    "invalid UTF-8 in JSONL": ("t.jsonl", _jsonl(_traffic_rows()[:1]) + b'{"query": "\xff\xfe"}\n', "line 2: bad UTF-8"),
    "invalid UTF-8 in CSV": ("t.csv", _csv(_traffic_rows()).replace(b"Blanching", b"Blanch\xc3(", 1), "line 2: bad UTF-8"),
}


@pytest.fixture
def traffic_world():
    surface = traffic_surface("hostile-web")
    import_traffic_rows(surface, [traffic_row(rank=1, doc_id="seed")], filename="seed.jsonl")
    return surface, UserFactory(username="bytes-analyst", roles=["analyst"])


@pytest.mark.embedded
@pytest.mark.parametrize("case", list(TRAFFIC_CASES))
def test_traffic_upload_names_the_line_and_imports_nothing(traffic_world, case):
    surface, analyst = traffic_world
    filename, data, message = TRAFFIC_CASES[case]
    before = _traffic_counts()
    response = _client(analyst).post("/traffic/imports/", {"surface": surface.pk,
                                                           "file": SimpleUploadedFile(filename, data)})
    assert response.status_code == 400, (case, response.status_code)
    assert message in _text(response), _text(response)[:3000]
    assert _traffic_counts() == before


@pytest.mark.embedded
@pytest.mark.parametrize("case", ["escaped NUL in the query", "NUL in a CSV cell", "invalid UTF-8 in JSONL"])
def test_traffic_apis_name_the_line_in_json(traffic_world, case):
    from gates.services import token_create

    surface, analyst = traffic_world
    filename, data, message = TRAFFIC_CASES[case]
    fmt = filename.rsplit(".", 1)[1]
    before = _traffic_counts()
    response = _client(analyst).post(f"/traffic/api/imports/?surface={surface.slug}&format={fmt}", data=data,
                                     content_type="application/octet-stream")
    assert response.status_code == 422 and message in response.json()["message"], response.content
    assert response.json()["details"]["line"] == int(message.split(":")[0].removeprefix("line "))
    _token, secret = token_create(owner=analyst, name="ci", scopes=["traffic:import"], user=analyst)
    response = Client().post(f"/api/traffic/imports?surface={surface.slug}&format={fmt}", data=data,
                             content_type="application/octet-stream", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 422 and message in response.json()["message"], response.content
    assert _traffic_counts() == before


@pytest.mark.embedded
def test_a_10_mb_traffic_file_is_imported(traffic_world):
    """100 rows with 100,000-character bodies (the largest a row may carry): 10 MB, imported whole."""
    surface, analyst = traffic_world
    rows = [traffic_row(rank=r, doc_id=f"big{r}", query=f"big query {r // 10}", body=f"{r} " + "x" * 99_990)
            for r in range(1, 101)]
    data = _jsonl(rows)
    assert len(data) >= 10_000_000
    before = _traffic_counts()
    response = _client(analyst).post("/traffic/imports/", {"surface": surface.pk,
                                                           "file": SimpleUploadedFile("big.jsonl", data)})
    assert response.status_code == 302, _text(response)[:2000]
    assert _traffic_counts()[0] == before[0] + 1 and _traffic_counts()[1] == before[1] + 100


@pytest.mark.embedded
def test_a_10_mb_line_of_junk_is_a_clear_error(traffic_world):
    surface, analyst = traffic_world
    before = _traffic_counts()
    for data in (b"\xff" * 10_000_000, b"{" + b"x" * 10_000_000 + b"\n"):
        response = _client(analyst).post("/traffic/imports/", {"surface": surface.pk,
                                                               "file": SimpleUploadedFile("junk.jsonl", data)})
        assert response.status_code == 400 and "line 1:" in _text(response)
    assert _traffic_counts() == before


# --- precedents ------------------------------------------------------------------------------------

@pytest.fixture
def policy_world():
    from tests.policy_factories import publish_policy

    return publish_policy(), UserFactory(username="bytes-reviewer", roles=["reviewer"])


def _precedent_rows(**line3) -> list[dict]:
    row = {"query": "how long do fleas live", "body": "30 to 90 days", "labels": {"relevance": 3}, "rationale": "exact"}
    return [row | {"query": "q1"}, row | {"query": "q2"}, row | line3]


PRECEDENT_CASES = {
    "escaped NUL in the query": ("p.jsonl", _jsonl(_precedent_rows(query=f"fleas{NUL}")),
                                 "field 'query' contains a NUL byte"),
    "escaped NUL in metadata": ("p.jsonl", _jsonl(_precedent_rows(metadata={"source": f"x{NUL}"})),
                                "field 'metadata.source' contains a NUL byte"),
    "raw NUL byte in JSONL": ("p.jsonl", _jsonl(_precedent_rows()[:2]) + json.dumps(
        _precedent_rows(rationale="R")[2]).replace('"R"', '"R\x00"').encode() + b"\n",
        "field 'rationale' contains a NUL byte"),
    "NUL in a CSV cell": ("p.csv", b"query,body,rationale,label_relevance\nq1,b,r,1\nq2,b,r,2\nq3,b\x00,r,3\n",
                          "field 'body' contains a NUL byte"),
    "invalid UTF-8 in JSONL": ("p.jsonl", _jsonl(_precedent_rows()[:2]) + b'{"query": "\xff"}\n', "not UTF-8"),
    "invalid UTF-8 in CSV": ("p.csv", b"query,body,rationale,label_relevance\nq1,b,r,1\nq2,b,r,2\nq3,\xffb,r,3\n",
                             "not UTF-8"),
}


@pytest.mark.parametrize("case", list(PRECEDENT_CASES))
def test_precedent_import_names_the_line_and_imports_nothing(policy_world, case):
    from precedent.models import Precedent

    version, reviewer = policy_world
    filename, data, message = PRECEDENT_CASES[case]
    response = _client(reviewer).post("/precedents/import/", {"policy": version.policy_id, "dry_run": "",
                                                              "file": SimpleUploadedFile(filename, data)})
    assert response.status_code == 422, (case, response.status_code)
    page = _text(response)
    assert message in page and "Nothing was imported" in page, page[-3000:]
    if "UTF-8" not in case:
        assert "<td>3</td>" in page.replace(" ", "") or "<td>4</td>" in page.replace(" ", "")
    assert not Precedent.objects.exists()


def test_a_10_mb_precedent_file_is_a_clear_error(policy_world):
    """Bodies over the precedent limit: refused by line, nothing imported, no 500."""
    from precedent.models import Precedent

    version, reviewer = policy_world
    rows = [{"query": f"q{n}", "body": "x" * 100_000, "labels": {"relevance": 1}, "rationale": "r"} for n in range(100)]
    data = _jsonl(rows)
    assert len(data) >= 10_000_000
    response = _client(reviewer).post("/precedents/import/", {"policy": version.policy_id, "dry_run": "",
                                                              "file": SimpleUploadedFile("big.jsonl", data)})
    assert response.status_code == 422 and "Nothing was imported" in _text(response)
    assert not Precedent.objects.exists()


def test_the_precedent_form_refuses_nul_in_every_text_field(policy_world):
    from precedent.models import Precedent

    version, reviewer = policy_world
    good = {"policy": version.policy_id, "query": "fleas", "body": "30-90 days", "rationale": "exact answer",
            "label_relevance": "3", "tags": "pets", "title": "t", "url": "https://example.com/", "metadata": ""}
    client = _client(reviewer)
    for name, value in [("query", f"fl{NUL}eas"), ("body", f"30{NUL}"), ("rationale", f"r{NUL}"), ("tags", f"p{NUL}"),
                        ("title", f"t{NUL}"), ("metadata", '{"a": "\\u0000"}')]:
        response = client.post(f"/precedents/new/?policy={version.policy_id}", good | {name: value})
        assert response.status_code in (200, 400, 422), (name, response.status_code)
        assert "NUL" in _text(response) or "Null characters are not allowed" in _text(response), name
    assert not Precedent.objects.exists()


# --- review labels: the import and the labelling form -----------------------------------------------

@pytest.fixture
def label_world():
    from review.services import assignment_next
    from tests.factories import review_queue

    reviewer = UserFactory(username="bytes-labeller", roles=["reviewer"])
    queue = review_queue(reviewers=[reviewer], overlap=1, queries=2, depth=2, slug="hostile-review")
    analyst = UserFactory(username="bytes-label-analyst", roles=["analyst"])
    items = list(queue.sample.sample_items.select_related("item__query", "item__document").order_by("position"))
    keys = [(si.item.query.text, si.item.document.external_id) for si in items]
    return queue, reviewer, analyst, keys, assignment_next(queue=queue, reviewer=reviewer)


def _label_rows(keys, **line3) -> list[dict]:
    rows = [{"assessor": "nist", "query": q, "doc_id": d, "labels": {"relevance": 1}, "rationale": "ok"}
            for q, d in keys[:3]]
    rows[2] |= line3
    return rows


@pytest.mark.parametrize("case", ["rationale", "query", "assessor", "raw", "utf8"])
def test_label_import_names_the_line_and_imports_nothing(label_world, case):
    from review.models import HumanLabel

    queue, _reviewer, analyst, keys, _assignment = label_world
    if case == "raw":
        data = _jsonl(_label_rows(keys)[:2]) + json.dumps(_label_rows(keys, rationale="R")[2]).replace(
            '"R"', '"R\x00"').encode() + b"\n"
        message = "line 3: field 'rationale' contains a NUL byte"
    elif case == "utf8":
        data = _jsonl(_label_rows(keys)[:2]) + b'{"assessor": "\xff"}\n'
        message = "line 3: bad UTF-8"
    else:
        data = _jsonl(_label_rows(keys, **{case: f"x{NUL}y"}))
        message = f"line 3: field '{case}' contains a NUL byte"
    before = HumanLabel.objects.count()
    response = _client(analyst).post("/review/labels/import/", {
        "policy_version": queue.policy_version_id, "file": SimpleUploadedFile("labels.jsonl", data), "dry_run": ""})
    assert response.status_code == 400, (case, response.status_code)
    assert message in _text(response), _text(response)[-3000:]
    assert HumanLabel.objects.count() == before


def test_the_label_form_refuses_a_nul_in_the_rationale(label_world):
    from review.models import HumanLabel

    queue, reviewer, _analyst, _keys, assignment = label_world
    url = f"/review/queues/{queue.pk}/label/{assignment.pk}/submit/"
    response = _client(reviewer).post(url, {"dim-relevance": "2", "rationale": f"because{NUL}"})
    assert response.status_code == 422
    assert "NUL" in _text(response)
    assert not HumanLabel.objects.filter(item_id=assignment.item_id, reviewer=reviewer).exists()


# --- judge labels: the web upload and the API, JSONL, CSV and qrels ---------------------------------

@pytest.fixture
def judge_world():
    from judges.services import judge_create
    from traffic.services import sample_draw

    surface = traffic_surface("hostile-judge")
    import_traffic_rows(surface, [traffic_row(query="fleas", query_id="301", rank=r, doc_id=f"m{r}", body=f"p {r}")
                                  for r in (1, 2, 3)])
    analyst = UserFactory(username="bytes-judge-analyst", roles=["analyst"])
    sample = sample_draw(surface=surface, name="all", strategy="top_k", params={"k": 3, "variants": ["control"]},
                         seed=1, user=analyst)
    version = judge_create(name="Imported", surface=surface, user=analyst, backend="imported", model_name="m",
                           policy_version=published_version(surface), precedent_k=0)
    return version, sample, analyst


def _judge_rows(**line3) -> list[dict]:
    rows = [{"query_id": "301", "doc_id": f"m{r}", "labels": {"relevance": 1}, "rationale": "r"} for r in (1, 2, 3)]
    rows[2] |= line3
    return rows


JUDGE_CASES = {
    "escaped NUL in the rationale": ("l.jsonl", _jsonl(_judge_rows(rationale=f"r{NUL}")),
                                     3, "field 'rationale' contains a NUL byte"),
    "escaped NUL in the doc id": ("l.jsonl", _jsonl(_judge_rows(doc_id=f"m{NUL}3")), 3,
                                  "field 'doc_id' contains a NUL byte"),
    "raw NUL byte in JSONL": ("l.jsonl", _jsonl(_judge_rows()[:2]) + json.dumps(_judge_rows(rationale="R")[2]).replace(
        '"R"', '"R\x00"').encode() + b"\n", 3, "field 'rationale' contains a NUL byte"),
    "NUL in a CSV cell": ("l.csv", b"query_id,doc_id,relevance,rationale\n301,m1,1,r\n301,m2,1,r\n301,m3,1,r\x00\n", 4,
                          "field 'rationale' contains a NUL byte"),
    "NUL in qrels": ("l.qrels", b"301 0 m1 1\n301 0 m2 1\n301 0 m\x003 1\n", 3, "field 'doc_id' contains a NUL byte"),
    "invalid UTF-8 in JSONL": ("l.jsonl", _jsonl(_judge_rows()[:2]) + b'{"query_id": "\xff"}\n', 3, "not UTF-8"),
    "invalid UTF-8 in CSV": ("l.csv", b"query_id,doc_id,relevance,rationale\n301,m1,1,r\n301,m2,1,r\n301,m3,1,\xff\n", 4,
                             "not UTF-8"),
}


@pytest.mark.parametrize("case", list(JUDGE_CASES))
def test_judge_label_import_names_the_line_and_imports_nothing(judge_world, case):
    from judges.models import JudgeRun, Judgment

    version, sample, analyst = judge_world
    filename, data, line, message = JUDGE_CASES[case]
    client = _client(analyst)
    response = client.post(f"/judges/{version.judge_id}/import/",
                           {"sample": sample.pk, "file": SimpleUploadedFile(filename, data), "dry_run": ""})
    assert response.status_code in (400, 422), (case, response.status_code)
    page = _text(response).replace(" ", "")
    assert message.replace(" ", "") in page and f"<td>{line}</td>" in page, _text(response)[-3000:]
    fmt = {"jsonl": "jsonl", "csv": "csv", "qrels": "qrels"}[filename.rsplit(".", 1)[1]]
    response = client.post(f"/judges/api/judges/{version.judge_id}/imports/?sample={sample.pk}&format={fmt}",
                           data=data, content_type="application/octet-stream")
    assert response.status_code == 422, (case, response.status_code, response.content[:500])
    assert any(e["line"] == line and message in e["message"] for e in response.json()["errors"]), response.json()
    assert not JudgeRun.objects.exists() and not Judgment.objects.exists()


# --- the policy editor, and a 10 MB form post --------------------------------------------------------

def _editor_post(draft, **overrides) -> dict:
    from tests.policy.test_views import editor_post

    return editor_post(draft, **overrides)


@pytest.mark.parametrize("field", ["text", "change_note", "dim-0-name", "dim-0-level-1-definition"])
def test_the_policy_editor_refuses_a_nul_and_saves_nothing(policy_world, field):
    from policy.models import PolicyVersion
    from policy.services import policy_draft_start

    version, reviewer = policy_world
    draft = policy_draft_start(policy=version.policy, user=reviewer)
    data = _editor_post(draft)
    data[field] = f"{data[field]}with{NUL}nul"
    response = _client(reviewer).post(f"/policies/{version.policy_id}/draft/", data)
    assert 400 <= response.status_code < 500, (field, response.status_code)
    assert "NUL" in _text(response), field
    fresh = PolicyVersion.objects.get(pk=draft.pk)
    assert fresh.lock_version == draft.lock_version and NUL not in fresh.text


def test_a_new_policy_with_a_nul_in_its_text_is_refused(policy_world):
    from policy.models import Policy

    version, reviewer = policy_world
    before = Policy.objects.count()
    response = _client(reviewer).post("/policies/new/", {"surface": version.policy.surface_id, "slug": "nul",
                                                         "name": f"N{NUL}", "text": f"# T{NUL}"})
    assert 400 <= response.status_code < 500 or response.status_code == 200, response.status_code
    assert Policy.objects.count() == before


def test_a_10_mb_form_post_is_a_clear_400_and_saves_nothing(policy_world):
    from policy.models import PolicyVersion
    from policy.services import policy_draft_start

    version, reviewer = policy_world
    draft = policy_draft_start(policy=version.policy, user=reviewer)
    response = _client(reviewer).post(f"/policies/{version.policy_id}/draft/",
                                      _editor_post(draft, text="x" * 10_000_000))
    assert response.status_code == 400
    assert "SAGE_MAX_FORM_MB" in _text(response) and "Nothing was saved" in _text(response)
    assert PolicyVersion.objects.get(pk=draft.pk).lock_version == draft.lock_version


def test_a_10_mb_json_body_to_an_api_is_a_json_413_not_a_500(policy_world):
    analyst = UserFactory(username="bytes-api-analyst", roles=["analyst"])
    response = _client(analyst).post("/judges/api/runs/", data=b'{"x": "' + b"y" * 10_000_000 + b'"}',
                                     content_type="application/json")
    assert response.status_code == 413
    assert response.json()["error"] == "too_large" and "SAGE_MAX_FORM_MB" in response.json()["message"]


@pytest.mark.parametrize("field", ["note", "amendment"])
def test_a_triage_decision_with_a_nul_changes_nothing(field):
    from calibration.models import Disagreement, TriageDecision
    from calibration.services import disagreements_refresh
    from precedent.models import Precedent
    from tests.calibration.helpers import calibrated_run

    run, _items, _analyst = calibrated_run(judge_labels=[3, 0, 1, 2], human_labels=[[0, 0, 1, 2]])
    disagreements_refresh(run=run, min_distance=2)
    d = Disagreement.objects.get()
    data = {"resolution": "judge_wrong", "note": "the judge overrated it", "amendment": ""} | {field: f"x{NUL}y"}
    response = _client(UserFactory(username="bytes-triager", roles=["reviewer"])).post(
        f"/calibration/triage/{d.pk}/", data)
    assert response.status_code == 200 and "NUL" in _text(response)
    assert not TriageDecision.objects.exists() and not Precedent.objects.exists()


# --- the same importers from the command line ---------------------------------------------------------

@pytest.mark.embedded
def test_import_traffic_command_names_the_line(traffic_world, tmp_path):
    from django.core.management import CommandError, call_command

    surface, _analyst = traffic_world
    filename, data, message = TRAFFIC_CASES["escaped NUL in the query"]
    path = tmp_path / filename
    path.write_bytes(data)
    before = _traffic_counts()
    with pytest.raises(CommandError, match=message):
        call_command("import_traffic", str(path), "--surface", surface.slug, "--no-progress")
    assert _traffic_counts() == before


def test_import_judgments_command_names_the_line(judge_world, tmp_path, capsys):
    from django.core.management import CommandError, call_command

    from judges.models import Judgment

    version, sample, _analyst = judge_world
    filename, data, line, message = JUDGE_CASES["NUL in qrels"]
    path = tmp_path / filename
    path.write_bytes(data)
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_judgments", str(path), "--judge-version", str(version.pk), "--sample", str(sample.pk),
                     "--no-progress")
    captured = capsys.readouterr()
    assert f"{line}" in captured.out + captured.err and message in captured.out + captured.err
    assert not Judgment.objects.exists()
