import io
import json

import pytest

from precedent.io import precedents_export, precedents_import
from precedent.models import Precedent
from tests.policy_factories import publish_policy

pytestmark = pytest.mark.django_db


def jsonl(*rows) -> io.BytesIO:
    return io.BytesIO("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode())


GOOD = {"query": "q", "body": "b", "labels": {"relevance": 3}, "rationale": "r", "clause": "scope", "tags": ["t"]}


def test_a_dry_run_checks_every_row_and_writes_nothing(reviewer):
    v1 = publish_policy()
    report = precedents_import(policy=v1.policy, stream=jsonl(GOOD, GOOD), fmt="jsonl", user=reviewer, dry_run=True)
    assert report.ok and report.rows == 2 and report.created == 0
    assert not Precedent.objects.exists()


def test_one_bad_row_imports_nothing_and_every_problem_has_its_line(reviewer):
    v1 = publish_policy()
    rows = jsonl(GOOD, "{not json", {**GOOD, "labels": {"relevance": 9}}, {**GOOD, "query": ""},
                 {**GOOD, "clause": "nope"}, {**GOOD, "status": "weird"}, GOOD)
    report = precedents_import(policy=v1.policy, stream=rows, fmt="jsonl", user=reviewer, dry_run=False)
    assert report.errors == [
        (2, "not valid JSON (Expecting property name enclosed in double quotes)"),
        (3, "labels: relevance: 9 is outside the scale 0-3"),
        (4, "missing query"),
        (5, "clause: no clause §nope in v1"),
        (6, "status 'weird' must be proposed or accepted"),
    ]
    assert not Precedent.objects.exists()


def test_bad_utf8_is_reported(reviewer):
    v1 = publish_policy()
    report = precedents_import(policy=v1.policy, stream=io.BytesIO(b'{"query": "\xff"}\n'), fmt="jsonl",
                               user=reviewer, dry_run=True)
    assert not report.ok and "not UTF-8" in report.errors[0][1]


def test_it_imports_csv_with_label_columns(reviewer):
    v1 = publish_policy()
    csv_text = "query,body,rationale,label_relevance,tags,status\nq1,b1,r1,2,a;b,accepted\nq2,b2,r2,0,,\n"
    report = precedents_import(policy=v1.policy, stream=io.BytesIO(csv_text.encode()), fmt="csv", user=reviewer,
                               dry_run=False)
    assert report.ok and report.created == 2
    p = Precedent.objects.get(query="q1")
    assert p.labels == {"relevance": 2} and p.tags == ["a", "b"] and p.status == "accepted"
    assert p.provenance == "import"


def test_export_round_trips_through_import(reviewer):
    v1 = publish_policy()
    precedents_import(policy=v1.policy, stream=jsonl(GOOD), fmt="jsonl", user=reviewer, dry_run=False)
    for fmt in ("jsonl", "csv"):
        exported = "".join(precedents_export(Precedent.objects.all(), fmt, ["relevance"]))
        report = precedents_import(policy=v1.policy, stream=io.BytesIO(exported.encode()), fmt=fmt, user=reviewer,
                                   dry_run=True)
        assert report.ok, (fmt, report.errors)
