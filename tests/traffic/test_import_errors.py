"""Every kind of bad row stops the import with its line number, and nothing is written."""

import io

import pytest

from traffic.models import Document, Item, Query, ResultEntry, TrafficImport
from traffic.rows import MAX_BODY_CHARS
from traffic.services import TrafficError, traffic_import
from tests.factories import jsonl_bytes, traffic_row, traffic_surface
from tests.markers import postgresql_only

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def _import(surface, data: bytes, filename="bad.jsonl"):
    return traffic_import(surface=surface, source=io.BytesIO(data), filename=filename)


def assert_nothing_written():
    assert TrafficImport.objects.count() == 0
    assert ResultEntry.objects.count() == Item.objects.count() == Query.objects.count() == Document.objects.count() == 0


def good(n):
    return [traffic_row(rank=i, doc_id=f"d{i}", body=f"body {i}") for i in range(1, n + 1)]


@pytest.mark.parametrize("field", ["variant", "query", "rank", "doc_id", "body"])
def test_a_missing_field_names_the_field_and_line(field):
    surface = traffic_surface()
    rows = good(3)
    del rows[2][field]
    with pytest.raises(TrafficError, match=rf"line 3: missing field '{field}'") as exc:
        _import(surface, jsonl_bytes(rows))
    assert exc.value.line == 3
    assert_nothing_written()


def test_a_duplicate_rank_for_the_same_variant_and_query_is_refused():
    surface = traffic_surface()
    rows = good(4) + [traffic_row(rank=2, doc_id="other", body="other body")]
    with pytest.raises(TrafficError, match=r"line 5: duplicate rank 2 .*first given on line 2"):
        _import(surface, jsonl_bytes(rows))
    assert_nothing_written()


def test_the_same_rank_in_another_variant_or_query_is_fine():
    surface = traffic_surface()
    rows = good(2) + [traffic_row(variant="treatment", rank=1), traffic_row(query="another query", rank=1)]
    assert _import(surface, jsonl_bytes(rows)).traffic_import.rows == 4


def test_an_unknown_variant_is_refused_with_the_known_ones():
    surface = traffic_surface()
    rows = good(2) + [traffic_row(variant="nope", rank=3)]
    with pytest.raises(TrafficError, match=r"line 3: unknown variant 'nope' \(this surface has: control, treatment\)"):
        _import(surface, jsonl_bytes(rows))
    assert_nothing_written()


def test_bad_utf8_is_refused_with_its_line():
    surface = traffic_surface()
    data = jsonl_bytes(good(2)) + b'{"variant": "control", "query": "caf\xe9", "rank": 3}\n'
    with pytest.raises(TrafficError, match=r"line 3: bad UTF-8"):
        _import(surface, data)
    assert_nothing_written()


def test_a_body_over_the_limit_is_refused():
    surface = traffic_surface()
    rows = good(1) + [traffic_row(rank=2, body="x" * (MAX_BODY_CHARS + 1))]
    with pytest.raises(TrafficError, match=r"line 2: body is 100,001 characters; the limit is 100,000"):
        _import(surface, jsonl_bytes(rows))
    assert_nothing_written()


def test_bad_json_is_refused_with_its_line():
    surface = traffic_surface()
    data = jsonl_bytes(good(2)) + b'{"variant": "control", "query": \n'
    with pytest.raises(TrafficError, match=r"line 3: bad JSON"):
        _import(surface, data)
    assert_nothing_written()


def test_a_bad_rank_is_refused():
    surface = traffic_surface()
    with pytest.raises(TrafficError, match=r"line 1: rank must be a whole number"):
        _import(surface, jsonl_bytes([traffic_row(rank=0)]))


def test_a_bad_row_late_in_a_big_file_rolls_back_every_earlier_row():
    surface = traffic_surface()
    rows = [traffic_row(query=f"q{i // 10}", rank=i % 10 + 1, doc_id=f"d{i}", body=f"b{i}") for i in range(12_000)]
    rows.append(traffic_row(variant="ghost", rank=1))
    with pytest.raises(TrafficError, match=r"line 12001"):
        _import(surface, jsonl_bytes(rows))
    assert_nothing_written()


def test_csv_errors_report_the_physical_line():
    surface = traffic_surface()
    data = (b"variant,query,rank,doc_id,body\n"
            b"control,spinach,1,d1,\"a body\nover two lines\"\n"
            b"control,spinach,2,d2,\n")
    with pytest.raises(TrafficError, match=r"line 4: missing field 'body'"):
        _import(surface, data, filename="t.csv")
    assert_nothing_written()


def test_a_csv_without_the_required_columns_is_refused():
    surface = traffic_surface()
    with pytest.raises(TrafficError, match=r"line 1: the CSV header lacks the required column\(s\) doc_id, body"):
        _import(surface, b"variant,query,rank\ncontrol,q,1\n", filename="t.csv")


def test_an_unknown_file_type_is_refused():
    surface = traffic_surface()
    with pytest.raises(TrafficError, match="name it .jsonl or .csv"):
        _import(surface, b"", filename="t.xlsx")


@postgresql_only
def test_a_duplicate_rank_across_batches_names_its_line(monkeypatch):
    """When the first row of the pair was written in an earlier batch, the unique constraint catches
    the repeat and the message still names the repeating line."""
    from traffic import pgimport

    monkeypatch.setattr(pgimport, "BATCH_ROWS", 2)
    surface = traffic_surface()
    rows = [traffic_row(rank=i, doc_id=f"d{i}", body=f"b{i}") for i in range(1, 6)]
    rows.append(traffic_row(rank=2, doc_id="d9", body="b9"))
    with pytest.raises(TrafficError, match=r"line 6: duplicate rank 2 .*first given earlier in the file, before line 5"):
        _import(surface, jsonl_bytes(rows))
    assert_nothing_written()
