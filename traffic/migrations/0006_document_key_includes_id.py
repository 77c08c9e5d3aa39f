"""A document's key covers its id in the source system, not only its text (issue 12).

Before this, two doc_ids with the same text became one document and so one item: 963 judged TREC
pairs became 887 items, and labels given for the second id found no item. Now the key
(`content_hash`) is sha256 over the id, title, url and body, each with a length prefix
(`traffic.rows.document_hash`, copied below so this migration keeps meaning what it meant).

Existing documents get their key recomputed from the id they were stored with, so importing the
same rows again finds them. What cannot be recovered: result entries imported before this
migration whose doc_id differed from their document's stored id (the second id of a shared text)
still point at that document — the file's other ids were never stored. Delete such an import and
import its file again to split them. Item hashes are left as they are: they are the items' names in
exported label files and in judgments (`judges.Judgment.item_hash`), and nothing derives them again.
"""

import hashlib

from django.db import migrations

CHUNK = 2_000


def _key(parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        encoded = part.encode()
        h.update(f"{len(encoded)}:".encode())
        h.update(encoded)
    return h.hexdigest()


def _length_prefixed(columns) -> str:
    """SQL for the length-prefixed concatenation `_key` hashes, as UTF-8 bytes."""
    text = " || ".join(f"octet_length(convert_to({c}, 'UTF8'))::text || ':' || {c}" for c in columns)
    return f"encode(sha256(convert_to({text}, 'UTF8')), 'hex')"


def _rekey(schema_editor, columns) -> None:
    connection = schema_editor.connection
    if connection.vendor == "postgresql":
        # One statement: the server hashes every document without sending any text to the client.
        schema_editor.execute(f"UPDATE traffic_document SET content_hash = {_length_prefixed(columns)}")
        return
    with connection.cursor() as cursor:
        last = 0
        while True:
            cursor.execute(f"SELECT id, {', '.join(columns)} FROM traffic_document WHERE id > %s ORDER BY id LIMIT %s",
                           [last, CHUNK])
            rows = cursor.fetchall()
            if not rows:
                return
            cursor.executemany("UPDATE traffic_document SET content_hash = %s WHERE id = %s",
                               [(_key(row[1:]), row[0]) for row in rows])
            last = rows[-1][0]


def forwards(apps, schema_editor):
    _rekey(schema_editor, ("external_id", "title", "url", "body"))


def backwards(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM (SELECT 1 FROM traffic_document GROUP BY title, url, body "
                       "HAVING COUNT(*) > 1) AS shared")
        if cursor.fetchone()[0]:
            raise RuntimeError("Cannot go back before traffic 0006: some documents with different ids share "
                               "their text, and the old key would make them one document.")
    _rekey(schema_editor, ("title", "url", "body"))


class Migration(migrations.Migration):

    dependencies = [
        ("traffic", "0005_item_lean_indexes"),
    ]

    operations = [
        migrations.RunPython(forwards, backwards, elidable=False),
    ]
