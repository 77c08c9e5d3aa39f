"""A good import: content-addressed items shared by variants, idempotent, streaming."""

import io
import threading

import pytest

from traffic.models import Document, Item, Query, ResultEntry, TrafficImport
from traffic.rows import document_hash, item_hash, query_hash
from traffic.services import traffic_import
from tests.factories import import_traffic_rows, jsonl_bytes, traffic_row, traffic_surface
from tests.markers import postgresql_only

# Both importers: PostgreSQL's (traffic.pgimport) in the main pass, SQLite's (traffic.staging) in
# ./run test's embedded pass.
pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


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
    dh = document_hash(doc_id="d1", title=row["title"], body=row["body"], url=row["url"])
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


def test_an_error_is_raised_before_later_lines_are_read(monkeypatch):
    """Parsing runs at most a few batches ahead of the writer: a bad line stops the reading there,
    not at the end of the file."""
    from traffic import pgimport

    monkeypatch.setattr(pgimport, "BATCH_ROWS", 10)
    surface = traffic_surface()
    pulled = []

    def lines():
        for i in range(1, 1000):
            pulled.append(i)
            yield jsonl_bytes([traffic_row(variant="ghost" if i == 5 else "control", rank=i)])

    with pytest.raises(Exception, match="line 5"):
        traffic_import(surface=surface, source=lines(), filename="gen.jsonl")
    assert 5 <= max(pulled) <= (pgimport.AHEAD + 2) * 10


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
        traffic_row(variant="treatment", rank=1, doc_id="d9", body="b9", fields={"x": 1}),
    ])
    assert second.traffic_import.stats == {"new_queries": 0, "new_documents": 1, "new_items": 1, "entries": 3}
    assert Document.objects.get(body="b9").fields == {}
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


def test_text_and_times_arrive_exactly_as_given():
    """PostgreSQL gets rows by binary COPY: tabs, newlines, backslashes, quotes and non-ASCII text,
    extra fields, and served times with offsets and microseconds come back unchanged."""
    from datetime import UTC, datetime, timedelta, timezone

    surface = traffic_surface()
    body = 'Tab\there,\nnew line, back\\slash \\N, "quotes", CR\r, emoji \U0001f600, é ü 漢字'
    import_traffic_rows(surface, [
        traffic_row(rank=1, query="Ärger\tmit \\N", doc_id="d\t1", title="T\\itle\n", body=body,
                    url="https://example.com/a?b=c\td", segment="tail\\x", locale="de-DE",
                    fields={"clicks": 3, "note": "tab\there"}, served_at="2024-05-01T10:00:00.123456+02:00"),
        traffic_row(rank=2, doc_id="d2", body="plain", served_at=None),
        traffic_row(rank=3, doc_id="d3", body="early", served_at="1999-12-31T23:59:59Z"),
    ])
    doc = Document.objects.get(external_id="d\t1")
    assert (doc.title, doc.body, doc.url, doc.fields) == ("T\\itle\n", body, "https://example.com/a?b=c\td",
                                                         {"clicks": 3, "note": "tab\there"})
    assert doc.content_hash == document_hash(doc_id="d\t1", title="T\\itle\n", body=body,
                                             url="https://example.com/a?b=c\td")
    query = Query.objects.get(locale="de-DE")
    assert (query.text, query.segment, query.locale) == ("Ärger\tmit \\N", "tail\\x", "de-DE")
    served = dict(ResultEntry.objects.values_list("rank", "served_at"))
    assert served[1] == datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert served[2] is None and served[3] == datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC)


def test_a_file_of_many_batches_shares_documents_and_items_across_them(monkeypatch):
    """Batches are written one after another: a document or pair first seen in an earlier batch is
    found by the lookup, never inserted twice."""
    from traffic import pgimport

    monkeypatch.setattr(pgimport, "BATCH_ROWS", 4)
    surface = traffic_surface()
    rows = [traffic_row(variant=variant, query=f"query {q}", rank=rank, doc_id=f"d{(q + rank) % 5}",
                        body=f"b{(q + rank) % 5}")
            for q in range(4) for variant in ("control", "treatment") for rank in (1, 2, 3)]
    result = import_traffic_rows(surface, rows)
    pairs = {(f"query {q}", (q + rank) % 5) for q in range(4) for rank in (1, 2, 3)}
    assert result.traffic_import.stats == {"new_queries": 4, "new_documents": 5, "new_items": len(pairs),
                                           "entries": 24}
    assert Document.objects.count() == 5 and Item.objects.count() == len(pairs) == 12
    assert ResultEntry.objects.count() == 24 and Query.objects.count() == 4
    # The ids drawn for the COPY leave the sequences where Django's next insert expects them.
    assert Document.objects.create(content_hash="x" * 64, body="after").pk > max(
        Document.objects.exclude(body="after").values_list("pk", flat=True))


def test_a_bad_row_in_a_later_batch_leaves_nothing_behind(monkeypatch):
    from traffic import pgimport
    from traffic.services import TrafficError

    monkeypatch.setattr(pgimport, "BATCH_ROWS", 2)
    surface = traffic_surface()
    rows = [traffic_row(rank=i, doc_id=f"d{i}", body=f"b{i}") for i in range(1, 8)]
    rows[5]["variant"] = "nope"
    with pytest.raises(TrafficError, match=r"line 6: unknown variant 'nope'"):
        import_traffic_rows(surface, rows)
    assert not Document.objects.exists() and not ResultEntry.objects.exists() and not TrafficImport.objects.exists()


@postgresql_only
def test_without_a_parser_process_the_import_parses_in_process(monkeypatch, caplog):
    """A parser process that cannot start (here: one that is broken from the start) costs speed,
    not the import: every chunk not yet written is parsed in the importer's process instead."""
    from concurrent.futures.process import BrokenProcessPool

    from traffic import pgimport

    class BrokenPool:
        def __init__(self, *args, **kwargs):
            pass

        def submit(self, *args, **kwargs):
            raise BrokenProcessPool("no worker")

        def shutdown(self, **kwargs):
            pass

    monkeypatch.setattr(pgimport, "BATCH_ROWS", 3)
    monkeypatch.setattr(pgimport, "ProcessPoolExecutor", BrokenPool)
    surface = traffic_surface()
    result = import_traffic_rows(surface, [traffic_row(rank=i, doc_id=f"d{i}", body=f"b{i}") for i in range(1, 11)])
    assert result.traffic_import.rows == 10 and ResultEntry.objects.count() == 10 and Document.objects.count() == 10
    assert "parsing in-process" in caplog.text


def test_a_known_document_after_batches_of_new_ones_is_found_not_duplicated(monkeypatch):
    """After batches of only new documents the writer COPYs without looking up first; a document
    that exists after all makes it undo that batch and look it up (no duplicate, exact counts)."""
    from traffic import pgimport

    monkeypatch.setattr(pgimport, "BATCH_ROWS", 2)
    surface = traffic_surface()
    import_traffic_rows(surface, [traffic_row(rank=1, doc_id="old", body="stored before")], filename="day0.jsonl")
    rows = [traffic_row(rank=i, doc_id=f"d{i}", body=f"b{i}") for i in range(1, 7)]
    rows.append(traffic_row(rank=7, doc_id="old", body="stored before"))
    rows.append(traffic_row(rank=8, doc_id="d8", body="b8"))
    result = import_traffic_rows(surface, rows)
    assert result.traffic_import.stats == {"new_queries": 0, "new_documents": 7, "new_items": 7, "entries": 8}
    assert Document.objects.filter(body="stored before").get().external_id == "old"
    assert Document.objects.count() == 8 and ResultEntry.objects.count() == 9


def test_a_file_that_fails_to_read_fails_the_import_and_is_never_cut_short(monkeypatch):
    """A read error is the file's, not the parser process's: it fails the import with nothing
    written, instead of the import falling back and committing the rows read before it."""
    from traffic import pgimport

    monkeypatch.setattr(pgimport, "FIRST_BATCH_ROWS", 2)
    monkeypatch.setattr(pgimport, "BATCH_ROWS", 4)
    surface = traffic_surface()
    lines = jsonl_bytes([traffic_row(rank=i, doc_id=f"d{i}", body=f"b{i}") for i in range(1, 31)]).splitlines(True)

    def failing_source():
        yield from lines[:20]
        raise OSError("the disk went away")

    with pytest.raises(OSError, match="the disk went away"):
        traffic_import(surface=surface, source=failing_source(), filename="t.jsonl")
    assert not Document.objects.exists() and not ResultEntry.objects.exists() and not TrafficImport.objects.exists()


@postgresql_only
def test_while_the_parser_process_starts_the_first_chunks_are_parsed_in_process(monkeypatch):
    """The server gets rows to write before the parser process runs; once it runs, it parses the rest."""
    from traffic import pgimport

    monkeypatch.setattr(pgimport, "FIRST_BATCH_ROWS", 2)
    monkeypatch.setattr(pgimport, "BATCH_ROWS", 8)
    parsed_here: list[int] = []
    two_parsed = threading.Event()
    here, start_pool = pgimport._ProcessParser._here, pgimport._ProcessParser._start_pool

    def counting_here(self, chunks):
        if len(parsed_here) >= 2:  # no further chunk here before the worker is up
            assert self.started.wait(60)
        for batch in here(self, chunks):
            parsed_here.append(len(batch))
            if len(parsed_here) >= 2:
                two_parsed.set()
            yield batch

    def late_start(self):
        two_parsed.wait(60)
        start_pool(self)

    monkeypatch.setattr(pgimport._ProcessParser, "_here", counting_here)
    monkeypatch.setattr(pgimport._ProcessParser, "_start_pool", late_start)
    surface = traffic_surface()
    result = import_traffic_rows(surface, [traffic_row(rank=i, doc_id=f"d{i}", body=f"b{i}") for i in range(1, 41)])
    assert result.traffic_import.rows == 40 and ResultEntry.objects.count() == 40 and Document.objects.count() == 40
    assert parsed_here[:2] == [2, 2] and sum(parsed_here) <= 6
    assert sorted(ResultEntry.objects.values_list("rank", flat=True)) == list(range(1, 41))
