"""Imported judge labels have a way in (web upload with a dry run, CLI, API, field mappings) and every
run's judgments a way out (JSONL, spreadsheet-safe CSV)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.management import CommandError, call_command

from judges.io import FieldMapping, judgments_import
from judges.models import JudgeRun, Judgment
from judges.services import JudgeError, judge_create, judge_run_import
from sage.services import api_token_create
from tests.factories import UserFactory, import_traffic_rows, published_version, traffic_row, traffic_surface
from tests.judges.helpers import judge_setup
from traffic.services import sample_draw

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"  # where a dry run keeps its upload until confirmed


@pytest.fixture
def imported_judge():
    """An imported judge over a 3-item sample, and the sample's (query_id, doc_id) keys in order."""
    surface = traffic_surface("import-web")
    import_traffic_rows(surface, [traffic_row(query="how long do fleas live", query_id="301", rank=rank,
                                              doc_id=f"msmarco_{rank}", body=f"passage {rank}") for rank in (1, 2, 3)])
    policy_version = published_version(surface)
    analyst = UserFactory(username="judge-analyst", roles=["analyst"])
    sample = sample_draw(surface=surface, name="all", strategy="top_k", params={"k": 3, "variants": ["control"]},
                         seed=1, user=analyst)
    judge_version = judge_create(name="LLMJudge import", surface=surface, user=analyst, backend="imported",
                                 model_name="gpt-4o", policy_version=policy_version, precedent_k=0)
    keys = [(si.item.query.external_id, si.item.document.external_id)
            for si in sample.sample_items.select_related("item__query", "item__document").order_by("position")]
    return judge_version, sample, analyst, keys


def jsonl(rows) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def _mapping(judge_version, **kw) -> FieldMapping:
    return FieldMapping.parse(rubric=judge_version.policy_version.parsed_rubric(), **kw)


# --- field mappings ----------------------------------------------------------------------------------

def test_one_label_per_run_loads_one_run_at_a_time(imported_judge):
    """The LLMJudge shape: every run's label in one 'labels' object; --label-field picks a run."""
    judge_version, sample, analyst, keys = imported_judge
    rows = [{"query_id": q, "doc_id": d, "labels": {"run-a": 1, "run-b": 3}} for q, d in keys]
    result = judgments_import(version=judge_version, sample=sample, stream=io.BytesIO(jsonl(rows)), fmt="jsonl",
                              mapping=_mapping(judge_version, label_fields=["relevance=run-b"]), user=analyst)
    assert result.ok, result.report.errors
    assert {j.labels["relevance"] for j in Judgment.objects.filter(run=result.report.run)} == {3}


def test_a_csv_with_other_column_names_maps_onto_sage_fields(imported_judge):
    judge_version, sample, analyst, keys = imported_judge
    text = "qid,docno,score,rationale\n" + "".join(f"{q},{d},2.0,\"=looks, relevant\"\n" for q, d in keys)
    result = judgments_import(version=judge_version, sample=sample, stream=io.BytesIO(text.encode()), fmt="csv",
                              mapping=_mapping(judge_version, label_fields=["relevance=score"], query_field="qid",
                                               doc_field="docno"), user=analyst)
    assert result.ok, result.report.errors
    judgment = Judgment.objects.filter(run=result.report.run).first()
    assert judgment.labels == {"relevance": 2} and judgment.rationale == "=looks, relevant"


def test_trec_qrels_load_as_the_overall_label(imported_judge):
    judge_version, sample, analyst, keys = imported_judge
    text = "# NIST qrels\n" + "".join(f"{q} 0 {d} {n}\n" for n, (q, d) in enumerate(keys))
    result = judgments_import(version=judge_version, sample=sample, stream=io.BytesIO(text.encode()), fmt="qrels",
                              mapping=_mapping(judge_version), user=analyst)
    assert result.ok, result.report.errors
    got = {(j.item.document.external_id, j.labels["relevance"]) for j in
           Judgment.objects.filter(run=result.report.run).select_related("item__document")}
    assert got == {(d, n) for n, (_q, d) in enumerate(keys)}


def test_bad_lines_in_every_format_are_named_with_their_line(imported_judge):
    judge_version, sample, analyst, keys = imported_judge
    (q0, d0), (q1, d1), (q2, d2) = keys
    qrels = f"{q0} 0 {d0} 1\n{q1} 0 {d1}\n{q2} 0 {d2} high\n"
    csv_text = f"query_id,doc_id,label_relevance\n{q0},{d0},1\n{q1},{d1},two\n{q2},{d2},3,extra\n"
    for fmt, text, expected in (
        ("qrels", qrels, [(2, "a qrels line has 4 fields (query_id iteration doc_id label), not 3"),
                          (3, "label='high' is not an integer level")]),
        ("csv", csv_text, [(3, "label_relevance='two' is not an integer level"), (4, "4 fields; the header has 3 (query_id, doc_id, label_relevance)")]),
    ):
        result = judgments_import(version=judge_version, sample=sample, stream=io.BytesIO(text.encode()), fmt=fmt,
                                  mapping=_mapping(judge_version), user=analyst)
        assert result.report.errors == expected, fmt
    assert not JudgeRun.objects.filter(judge_version=judge_version).exists()


def test_a_mapping_must_name_a_rubric_dimension(imported_judge):
    judge_version, *_ = imported_judge
    with pytest.raises(JudgeError, match="no dimension 'relevence' in the rubric"):
        _mapping(judge_version, label_fields=["relevence=score"])
    with pytest.raises(JudgeError, match="write dimension=column"):
        _mapping(judge_version, label_fields=["score"])


def test_a_dry_run_reports_and_previews_but_writes_nothing(imported_judge):
    judge_version, sample, analyst, keys = imported_judge
    rows = [{"query_id": q, "doc_id": d, "label": 2} for q, d in keys] + [{"query_id": "other", "doc_id": "x", "label": 1}]
    result = judgments_import(version=judge_version, sample=sample, stream=io.BytesIO(jsonl(rows)), fmt="jsonl",
                              mapping=_mapping(judge_version), user=analyst, skip_unmatched=True, dry_run=True)
    assert result.ok and result.report.rows == 3 and result.report.skipped == 1 and result.report.run is None
    assert [p["line"] for p in result.preview] == [1, 2, 3, 4]
    assert not JudgeRun.objects.filter(judge_version=judge_version).exists()


# --- the command ------------------------------------------------------------------------------------

def test_the_command_imports_checks_and_reports_line_numbers(imported_judge, tmp_path):
    judge_version, sample, analyst, keys = imported_judge
    path = tmp_path / "labels.csv"
    path.write_text("query_id,doc_id,gpt\n" + "".join(f"{q},{d},1\n" for q, d in keys))
    out = io.StringIO()
    call_command("import_judgments", str(path), "--judge", judge_version.judge.name, "--sample", str(sample.pk),
                 "--label-field", "relevance=gpt", "--dry-run", "--no-progress", stdout=out)
    assert "all 3 line(s) valid" in out.getvalue() and not JudgeRun.objects.exists()
    call_command("import_judgments", str(path), "--judge-version", str(judge_version.pk), "--sample", str(sample.pk),
                 "--label-field", "relevance=gpt", "--no-progress", stdout=out)
    assert JudgeRun.objects.get(judge_version=judge_version).done_items == 3
    path.write_text(path.read_text().replace(f"{keys[1][1]},1", f"{keys[1][1]},7"))
    err = io.StringIO()
    with pytest.raises(CommandError, match="1 problem"):
        call_command("import_judgments", str(path), "--judge", judge_version.judge.name, "--sample", str(sample.pk),
                     "--label-field", "relevance=gpt", "--no-progress", stdout=out, stderr=err)
    assert "labels.csv:3: relevance: 7 is outside the scale 0-3" in err.getvalue()


# --- the API ------------------------------------------------------------------------------------------

def test_the_api_imports_into_an_imported_judge_and_refuses_bad_files(client, imported_judge):
    judge_version, sample, analyst, keys = imported_judge
    _, key = api_token_create(user=analyst, name="ci")
    auth = {"Authorization": f"Bearer {key}"}
    url = f"/judges/api/judges/{judge_version.judge_id}/imports/?sample={sample.pk}"
    bad = jsonl([{"query_id": q, "doc_id": d, "labels": {"relevance": 5 if n == 1 else 1}} for n, (q, d) in enumerate(keys)])
    response = client.post(url, data=bad, content_type="application/x-ndjson", headers=auth)
    assert response.status_code == 422
    assert response.json()["errors"] == [{"line": 2, "message": "relevance: 5 is outside the scale 0-3"}]
    good = bad.replace(b'"relevance": 5', b'"relevance": 2')
    response = client.post(url + "&dry_run=1", data=good, content_type="application/x-ndjson", headers=auth)
    assert response.status_code == 200 and response.json()["rows"] == 3 and not JudgeRun.objects.exists()
    response = client.post(url, data=good, content_type="application/x-ndjson", headers=auth)
    assert response.status_code == 201
    assert JudgeRun.objects.get(pk=response.json()["run"]).done_items == 3


@pytest.mark.parametrize("sample", ["²", "9" * 25, "-1", ""])
def test_the_api_answers_a_hostile_sample_id_with_404(client, imported_judge, sample):
    judge_version, _sample, analyst, _keys = imported_judge
    _, key = api_token_create(user=analyst, name="ci")
    response = client.post(f"/judges/api/judges/{judge_version.judge_id}/imports/?sample={sample}", data=b"",
                           content_type="application/x-ndjson", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 404 and response.json()["error"] == "unknown_sample"


def test_the_api_refuses_an_endpoint_judge(client):
    version, sample, analyst = judge_setup(queries=1, depth=1, slug="api-endpoint", endpoint="local")
    _, key = api_token_create(user=analyst, name="ci")
    response = client.post(f"/judges/api/judges/{version.judge_id}/imports/?sample={sample.pk}", data=b"{}",
                           content_type="application/x-ndjson", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 422 and "'imported'" in response.json()["message"]


# --- the web upload --------------------------------------------------------------------------------

def test_the_web_upload_checks_first_and_imports_on_confirm(client, imported_judge):
    judge_version, sample, analyst, keys = imported_judge
    client.force_login(analyst)
    page = client.get(f"/judges/{judge_version.judge_id}/").content.decode()
    assert 'id="judgment-import-form"' in page
    upload = io.BytesIO(jsonl([{"query_id": q, "doc_id": d, "labels": {"relevance": 1}} for q, d in keys]))
    upload.name = "labels.jsonl"
    response = client.post(f"/judges/{judge_version.judge_id}/import/",
                           {"sample": sample.pk, "file": upload, "dry_run": "on"})
    html = response.content.decode()
    assert response.status_code == 200 and "would be imported" in html and not JudgeRun.objects.exists()
    token = response.context["upload"]
    response = client.post(f"/judges/{judge_version.judge_id}/import/", {"sample": sample.pk, "upload": token})
    run = JudgeRun.objects.get()
    assert response["Location"] == f"/judges/runs/{run.pk}/" and run.done_items == 3
    # The kept file is gone, and a second confirm cannot import it twice.
    response = client.post(f"/judges/{judge_version.judge_id}/import/", {"sample": sample.pk, "upload": token})
    assert response.status_code == 400 and JudgeRun.objects.count() == 1


def test_an_upload_token_from_another_session_is_refused(client, imported_judge, make_user):
    judge_version, sample, analyst, keys = imported_judge
    client.force_login(analyst)
    upload = io.BytesIO(jsonl([{"query_id": q, "doc_id": d, "label": 1} for q, d in keys]))
    upload.name = "labels.jsonl"
    token = client.post(f"/judges/{judge_version.judge_id}/import/",
                        {"sample": sample.pk, "file": upload, "dry_run": "on"}).context["upload"]
    client.logout()
    client.force_login(make_user("analyst", username="other-analyst"))
    response = client.post(f"/judges/{judge_version.judge_id}/import/", {"sample": sample.pk, "upload": token})
    assert response.status_code == 400 and not JudgeRun.objects.exists()


def test_reviewers_cannot_upload(client, imported_judge, reviewer):
    judge_version, sample, *_ = imported_judge
    client.force_login(reviewer)
    assert client.post(f"/judges/{judge_version.judge_id}/import/", {"sample": sample.pk}).status_code == 403


# --- exports ---------------------------------------------------------------------------------------------

def test_a_run_exports_as_jsonl_that_reimports_and_as_safe_csv(client, imported_judge, tmp_path):
    judge_version, sample, analyst, keys = imported_judge
    rows = [{"query_id": q, "doc_id": d, "labels": {"relevance": 2}, "rationale": "@SUM(A1) or -1"} for q, d in keys]
    run = judgments_import(version=judge_version, sample=sample, stream=io.BytesIO(jsonl(rows)), fmt="jsonl",
                           mapping=_mapping(judge_version), user=analyst).report.run
    client.force_login(analyst)
    assert f"/judges/runs/{run.pk}/export/?format=csv" in client.get(f"/judges/runs/{run.pk}/").content.decode()
    exported = b"".join(client.get(f"/judges/runs/{run.pk}/export/?format=jsonl").streaming_content)
    assert [json.loads(line)["labels"] for line in exported.splitlines()] == [{"relevance": 2}] * 3
    again = judgments_import(version=judge_version, sample=sample, stream=io.BytesIO(exported), fmt="jsonl",
                             mapping=_mapping(judge_version), user=analyst, dry_run=True)
    assert again.ok, again.report.errors
    response = client.get(f"/judges/runs/{run.pk}/export/?format=csv")
    assert response["Content-Type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["label_relevance"] for r in table] == ["2", "2", "2"]
    assert {r["rationale"] for r in table} == {"'@SUM(A1) or -1"}
    # The command writes the same file.
    out = tmp_path / "run.csv"
    call_command("export_judgments", "--run", str(run.pk), "--format", "csv", "-o", str(out), stderr=io.StringIO())
    assert list(csv.DictReader(out.open(encoding="utf-8"))) == table


def test_a_sample_with_two_texts_under_one_doc_id_is_refused_not_half_imported(imported_judge):
    """A doc_id whose text changed is two documents; its id alone cannot say which a line labels."""
    judge_version, sample, analyst, keys = imported_judge
    surface = sample.surface
    import_traffic_rows(surface, [traffic_row(query="how long do fleas live", query_id="301", rank=4,
                                              doc_id="msmarco_1", body="passage 1, rewritten")], filename="later.jsonl")
    both = sample_draw(surface=surface, name="both texts", strategy="top_k", params={"k": 4, "variants": ["control"]},
                       seed=1, user=analyst)
    rows = [{"query_id": "301", "doc_id": f"msmarco_{n}", "labels": {"relevance": 1}} for n in (1, 2, 3)]
    with pytest.raises(JudgeError, match=r"two texts under the same ids \(query_id='301' doc_id='msmarco_1'\)"):
        judge_run_import(version=judge_version, sample=both, stream=io.BytesIO(jsonl(rows)), user=analyst)
    assert not JudgeRun.objects.filter(sample=both).exists()
