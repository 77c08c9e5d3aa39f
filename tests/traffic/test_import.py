"""A good import: content-addressed items shared by variants, idempotent, streaming."""

import io

import pytest

from traffic.models import Document, Item, Query, ResultEntry, TrafficImport
from traffic.rows import document_hash, item_hash, query_hash
from traffic.services import traffic_import
from tests.factories import import_traffic_rows, jsonl_bytes, traffic_row, traffic_surface

pytestmark = pytest.mark.django_db


def test_two_variants_serving_the_same_pair_share_one_item():
    surface = traffic_surface()
    result = import_traffic_rows(surface, [
        traffic_row(variant="control", rank=1), traffic_row(variant="treatment", rank=3),
        traffic_row(variant="treatment", rank=1, doc_id="d2", body="Another passage."),
    ])
    assert result.created and result.traffic_import.rows == 3
    assert Item.objects.count() == 2 and Query.objects.count() == 1 and Document.objects.count() == 2
    item = Item.objects.get(document__external_id="d1")
    assert set(item.entries.values_list("variant__name", "rank")) == {("control", 1), ("treatment", 3)}
    row = traffic_row()
    dh = document_hash(title=row["title"], body=row["body"], url=row["url"])
    assert item.hash == item_hash(query_hash(row["query"]), dh)
    assert result.traffic_import.stats == {"new_queries": 1, "new_documents": 2, "new_items": 2, "entries": 3}


def test_query_identity_ignores_case_and_spacing():
    surface = traffic_surface()
    import_traffic_rows(surface, [traffic_row(query="How  long do you Blanch spinach"),
                                  traffic_row(variant="treatment", query="how long do you blanch spinach ")])
    assert Query.objects.count() == 1 and Item.objects.count() == 1


def test_reimporting_the_same_file_is_a_no_op():
    surface = traffic_surface()
    rows = [traffic_row(rank=i, doc_id=f"d{i}", body=f"b{i}") for i in range(1, 6)]
    first = import_traffic_rows(surface, rows)
    again = import_traffic_rows(surface, rows, filename="renamed.jsonl")
    assert not again.created and again.traffic_import.pk == first.traffic_import.pk
    assert TrafficImport.objects.count() == 1 and ResultEntry.objects.count() == 5


def test_a_non_seekable_stream_of_the_same_file_is_also_a_no_op():
    surface = traffic_surface()
    data = jsonl_bytes([traffic_row()])
    import_traffic_rows(surface, [traffic_row()])
    again = traffic_import(surface=surface, source=iter(data.splitlines(keepends=True)), filename="x.jsonl")
    assert not again.created and ResultEntry.objects.count() == 1


def test_a_new_file_with_known_pairs_adds_entries_but_no_new_items():
    surface = traffic_surface()
    import_traffic_rows(surface, [traffic_row()])
    second = import_traffic_rows(surface, [traffic_row(served_at="2024-05-01T10:00:00Z")])
    assert second.created and second.traffic_import.stats["new_items"] == 0
    assert Item.objects.count() == 1 and ResultEntry.objects.count() == 2


def test_the_importer_consumes_a_generator_line_by_line():
    """Streaming: the importer pulls lines one at a time; it never asks for the whole file."""
    surface = traffic_surface()
    pulled = []

    def lines():
        for i in range(1, 2001):
            pulled.append(i)
            yield jsonl_bytes([traffic_row(query=f"q{i // 10}", rank=i % 10 + 1, doc_id=f"d{i}", body=f"b{i}")])

    generator = lines()
    result = traffic_import(surface=surface, source=generator, filename="gen.jsonl")
    assert result.traffic_import.rows == 2000 and pulled == list(range(1, 2001))


def test_an_error_is_raised_before_later_lines_are_read():
    surface = traffic_surface()
    pulled = []

    def lines():
        for i in range(1, 1000):
            pulled.append(i)
            yield jsonl_bytes([traffic_row(variant="ghost" if i == 5 else "control", rank=i)])

    with pytest.raises(Exception, match="line 5"):
        traffic_import(surface=surface, source=lines(), filename="gen.jsonl")
    assert max(pulled) == 5


def test_csv_with_a_fields_column_imports():
    surface = traffic_surface()
    data = (b"variant,query,rank,doc_id,title,body,url,segment,fields\n"
            b'control,spinach,1,d1,T,"body, with comma",https://x.org,head,"{""clicks"": 3}"\n'
            b"treatment,spinach,1,d1,T,\"body, with comma\",https://x.org,head,\n")
    result = traffic_import(surface=surface, source=io.BytesIO(data), filename="t.csv")
    assert result.traffic_import.rows == 2 and Item.objects.count() == 1
    doc = Document.objects.get()
    assert doc.fields == {"clicks": 3} and doc.body == "body, with comma"


def test_a_utf8_bom_is_accepted():
    surface = traffic_surface()
    result = traffic_import(surface=surface, source=io.BytesIO(b"\xef\xbb\xbf" + jsonl_bytes([traffic_row()])),
                            filename="bom.jsonl")
    assert result.traffic_import.rows == 1


def test_the_import_is_the_same_with_per_row_foreign_key_checks(settings):
    """Where the database role may not switch the row triggers off, the checks stay on; same result."""
    settings.TRAFFIC_IMPORT_SKIP_FK_TRIGGERS = False
    surface = traffic_surface()
    result = import_traffic_rows(surface, [traffic_row(rank=i, doc_id=f"d{i}", body=f"b{i}") for i in range(1, 4)]
                                 + [traffic_row(variant="treatment", rank=1, doc_id="d1", body="b1")])
    assert result.traffic_import.stats == {"new_queries": 1, "new_documents": 3, "new_items": 3, "entries": 4}


def test_lines_only_the_standard_library_parses_still_import():
    """orjson refuses NaN; the fallback parser accepts the line as the importer always did."""
    surface = traffic_surface()
    data = b'{"variant": "control", "query": "q", "rank": 1, "doc_id": "d", "body": "b", "score": NaN}\n'
    assert traffic_import(surface=surface, source=io.BytesIO(data), filename="nan.jsonl").traffic_import.rows == 1


def test_a_file_of_partly_known_pairs_adds_only_the_new_ones():
    """The known documents and items are skipped before insertion; the first row of a new one wins."""
    surface = traffic_surface()
    import_traffic_rows(surface, [traffic_row(rank=i, doc_id=f"d{i}", body=f"b{i}") for i in range(1, 4)])
    second = import_traffic_rows(surface, [
        traffic_row(rank=1, doc_id="d1", body="b1"), traffic_row(rank=2, doc_id="d9", body="b9"),
        traffic_row(variant="treatment", rank=1, doc_id="d9-again", body="b9", fields={"x": 1}),
    ])
    assert second.traffic_import.stats == {"new_queries": 0, "new_documents": 1, "new_items": 1, "entries": 3}
    assert Document.objects.get(body="b9").external_id == "d9"
    assert Item.objects.count() == 4 and ResultEntry.objects.count() == 6


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("skip_fk_triggers", [True, False])
def test_concurrent_imports_of_overlapping_files_take_turns_and_share_items(settings, skip_fk_triggers):
    """Two imports racing over the same new pairs both land, and share one item per pair (the
    table lock makes them take turns; without it ON CONFLICT waits could deadlock)."""
    import threading

    from django.db import connection

    settings.TRAFFIC_IMPORT_SKIP_FK_TRIGGERS = skip_fk_triggers
    surface = traffic_surface()
    files = [[traffic_row(rank=i, doc_id=f"d{i}", body=f"b{i}", served_at=f"2024-05-0{n}T10:00:00Z")
              for i in range(1 + n * 10, 31 + n * 10)] for n in (1, 2)]  # ranks 11-40 and 21-50
    barrier, results, errors = threading.Barrier(2), [], []

    def run(rows):
        try:
            barrier.wait(timeout=10)
            results.append(import_traffic_rows(surface, rows, filename=f"{rows[0]['rank']}.jsonl"))
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(rows,)) for rows in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert all(r.created for r in results) and len(results) == 2
    assert sorted(r.traffic_import.stats["new_items"] for r in results) == [10, 30]
    assert Item.objects.count() == 40 and ResultEntry.objects.count() == 60
