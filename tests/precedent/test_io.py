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


# --- issue 12: nothing lost, nothing doubled ------------------------------------------------------

@pytest.mark.embedded  # imports into one policy take turns: a row lock on PostgreSQL, SQLite's write lock
def test_reimporting_the_same_file_skips_every_identical_precedent(reviewer):
    """Before: a second import of the same JSONL created every precedent again."""
    v1 = publish_policy()
    other = {**GOOD, "query": "another query"}
    first = precedents_import(policy=v1.policy, stream=jsonl(GOOD, other), fmt="jsonl", user=reviewer, dry_run=False)
    assert first.created == 2 and not first.skipped
    ids = dict(Precedent.objects.values_list("query", "id"))
    again = precedents_import(policy=v1.policy, stream=jsonl(GOOD, other), fmt="jsonl", user=reviewer, dry_run=False)
    assert again.ok and again.created == 0
    assert again.skipped == [(1, f"identical to precedent #{ids['q']}, not imported again"),
                             (2, f"identical to precedent #{ids['another query']}, not imported again")]
    assert Precedent.objects.count() == 2


def test_a_dry_run_says_what_would_be_skipped(reviewer):
    v1 = publish_policy()
    precedents_import(policy=v1.policy, stream=jsonl(GOOD), fmt="jsonl", user=reviewer, dry_run=False)
    report = precedents_import(policy=v1.policy, stream=jsonl(GOOD, {**GOOD, "query": "new"}), fmt="jsonl",
                               user=reviewer, dry_run=True)
    assert report.to_create == 1 and [line for line, _ in report.skipped] == [1]
    assert Precedent.objects.count() == 1


def test_duplicates_within_a_file_and_near_duplicates_are_reported(reviewer):
    v1 = publish_policy()
    precedents_import(policy=v1.policy, stream=jsonl(GOOD), fmt="jsonl", user=reviewer, dry_run=False)
    relabelled = {**GOOD, "query": "q2", "labels": {"relevance": 1}}
    near = {**GOOD, "rationale": "a different reason"}
    report = precedents_import(policy=v1.policy, stream=jsonl(relabelled, relabelled, near), fmt="jsonl",
                               user=reviewer, dry_run=False)
    assert report.created == 2
    assert report.skipped == [(2, "identical to line 1, imported once")]
    first = Precedent.objects.get(rationale="r", query="q")
    assert report.duplicates == [(3, f"same query and result as precedent #{first.pk}, "
                                     "with other labels, rationale or clause")]


def test_csv_export_neutralises_formula_cells_and_round_trips(reviewer):
    import csv as csvmodule

    v1 = publish_policy()
    hostile = {**GOOD, "query": "=HYPERLINK(\"http://evil\",\"x\")", "body": "+1+cmd|' /C calc'!A0",
               "rationale": "-2+3", "title": "@SUM(A1)", "tags": ["\tx"]}
    precedents_import(policy=v1.policy, stream=jsonl(hostile, {**GOOD, "rationale": "'quoted already"}),
                      fmt="jsonl", user=reviewer, dry_run=False)
    exported = "".join(precedents_export(Precedent.objects.order_by("id"), "csv", ["relevance"]))
    rows = list(csvmodule.DictReader(io.StringIO(exported)))
    assert rows[0]["query"] == "'=HYPERLINK(\"http://evil\",\"x\")" and rows[0]["body"].startswith("'+1")
    assert rows[0]["rationale"] == "'-2+3" and rows[0]["title"] == "'@SUM(A1)" and rows[0]["tags"] == "'\tx"
    assert rows[1]["rationale"] == "''quoted already" and rows[1]["label_relevance"] == "3"
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r"))
    # The importer undoes the escaping: re-importing the export finds both precedents identical.
    report = precedents_import(policy=v1.policy, stream=io.BytesIO(exported.encode()), fmt="csv", user=reviewer,
                               dry_run=True)
    assert report.ok and report.to_create == 0 and len(report.skipped) == 2, report.skipped
