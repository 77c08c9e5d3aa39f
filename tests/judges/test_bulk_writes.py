"""sage.bulk.insert_ignoring_conflicts, the judgment writer of chunk flushes, cache copies and label
imports: COPY through a staging table on PostgreSQL, bulk_create(ignore_conflicts) on SQLite. Both
must store exactly what bulk_create stored and skip what the unique (run, item) already holds."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone

from judges.models import Judgment, JudgeRun
from judges.services import _cache_key
from sage.bulk import insert_ignoring_conflicts
from tests.judges.helpers import judge_setup
from tests.markers import postgresql_only

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]

# Every column kind the judgments table has: JSON, text with tabs, newlines, backslashes and
# non-ASCII (COPY's text format escapes them), decimals, floats, NULLs, booleans.
AWKWARD = 'tab\there, newline\nhere, backslash \\N and \\t, quote " \' — é ✓ 𝄞'


def _judgments(run: JudgeRun, items) -> list[Judgment]:
    version = run.judge_version
    rows = []
    for n, item in enumerate(items):
        ok = n % 3 != 2
        rows.append(Judgment(
            run=run, item=item, status=Judgment.Status.OK if ok else Judgment.Status.ERROR,
            labels={"relevance": n % 4, "note": AWKWARD} if ok else None, rationale=AWKWARD * (n % 2),
            error_kind="" if ok else "timeout", error_message="" if ok else AWKWARD, prompt=f"prompt {n}\n{AWKWARD}",
            raw_response='{"labels": {"relevance": 2}}', tokens_in=400 + n, tokens_out=40, cost=Decimal("0.00012345"),
            latency_ms=None if n % 4 == 0 else 812.5, attempts=1 + n % 2, repaired=bool(n % 2),
            judge_version=version, policy_version_id=version.policy_version_id,
            rubric_hash=version.policy_version.rubric_hash, precedent_set=None, precedent_ids=[n, n + 1],
            item_hash=item.hash, cache_key=_cache_key(version, None, item.hash), model_hash="",
        ))
    return rows


COMPARED = ["item_id", "status", "labels", "rationale", "error_kind", "error_message", "prompt", "raw_response",
            "tokens_in", "tokens_out", "cost", "latency_ms", "attempts", "repaired", "judge_version_id",
            "policy_version_id", "rubric_hash", "precedent_set_id", "precedent_ids", "item_hash", "cache_key",
            "cached_from_id", "model_hash"]


def _stored(run: JudgeRun) -> list[tuple]:
    return list(Judgment.objects.filter(run=run).order_by("item_id").values_list(*COMPARED))


@pytest.fixture
def two_runs():
    version, sample, _ = judge_setup(queries=3, depth=4, endpoint="local")
    items = [si.item for si in sample.sample_items.select_related("item").order_by("position")]

    def new_run() -> JudgeRun:
        return JudgeRun.objects.create(judge_version=version, sample=sample, status=JudgeRun.Status.RUNNING,
                                       total_items=len(items))
    return new_run(), new_run(), items


def test_stores_what_bulk_create_stores(two_runs):
    ours, reference, items = two_runs
    before = timezone.now()
    inserted = insert_ignoring_conflicts(_judgments(ours, items))
    Judgment.objects.bulk_create(_judgments(reference, items), ignore_conflicts=True)
    assert _stored(ours) == _stored(reference)
    assert len(_stored(ours)) == len(items) == 12
    assert inserted in (12, None)  # None: SQLite's bulk_create does not say
    # auto_now_add filled, as bulk_create does
    assert all(c >= before for c in Judgment.objects.filter(run=ours).values_list("created_at", flat=True))


def test_skips_rows_the_unique_run_item_holds(two_runs):
    run, _, items = two_runs
    insert_ignoring_conflicts(_judgments(run, items[:5]))
    first = {j.item_id: j.pk for j in Judgment.objects.filter(run=run)}
    # A redelivered chunk: the first five again (changed, to show the stored ones win), and seven new
    again = _judgments(run, items)
    for j in again[:5]:
        j.rationale = "a second opinion"
    inserted = insert_ignoring_conflicts(again)
    assert inserted in (7, None)
    stored = Judgment.objects.filter(run=run)
    assert stored.count() == 12
    assert {j.item_id: j.pk for j in stored if j.item_id in first} == first
    assert not stored.filter(rationale="a second opinion").exists()


def test_empty_list_writes_nothing(two_runs):
    run, _, _ = two_runs
    assert insert_ignoring_conflicts([]) == 0
    assert not Judgment.objects.filter(run=run).exists()


@postgresql_only
def test_a_conflict_inside_the_callers_transaction_keeps_its_earlier_writes(two_runs):
    run, other, items = two_runs

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        assert insert_ignoring_conflicts(_judgments(run, items[:6])) == 6  # straight COPY
        assert insert_ignoring_conflicts(_judgments(other, items)) == 12
        # a conflict: the COPY's savepoint rolls back, the staging table takes the batch
        assert insert_ignoring_conflicts(_judgments(run, items)) == 6
        assert Judgment.objects.filter(run=run).count() == 12
        assert Judgment.objects.filter(run=other).count() == 12
        with connection.cursor() as cursor:
            cursor.execute('SELECT count(*) FROM "sage_stage_judges_judgment"')
            assert cursor.fetchone()[0] == 0  # emptied after the move
        raise Abort
    assert not Judgment.objects.filter(run__in=[run, other]).exists()  # all rolled back with the caller


@postgresql_only
def test_a_failing_row_writes_none_of_the_batch(two_runs):
    run, _, items = two_runs
    rows = _judgments(run, items)
    rows[7].labels = None  # status ok without labels: the table's check constraint refuses it
    rows[7].status = Judgment.Status.OK
    from django.db import IntegrityError

    with pytest.raises(IntegrityError):
        insert_ignoring_conflicts(rows)
    assert not Judgment.objects.filter(run=run).exists()
    # and the connection is usable afterwards, the staging table empty
    assert insert_ignoring_conflicts(_judgments(run, items[:2])) == 2


@postgresql_only
def test_batches_are_all_or_nothing_and_each_skips_its_conflicts(two_runs, monkeypatch):
    run, _, items = two_runs
    monkeypatch.setattr("sage.bulk.BATCH", 5)
    insert_ignoring_conflicts(_judgments(run, items[3:4]))
    # three batches: the first meets the stored item and goes through the staging table
    assert insert_ignoring_conflicts(_judgments(run, items)) == 11
    assert Judgment.objects.filter(run=run).count() == 12
    rows = _judgments(run, items)
    rows[11].labels, rows[11].status = None, Judgment.Status.OK  # the last batch fails
    from django.db import IntegrityError

    Judgment.objects.filter(run=run).delete()
    with pytest.raises(IntegrityError):
        insert_ignoring_conflicts(rows)
    assert not Judgment.objects.filter(run=run).exists()  # the first two batches rolled back too
