"""Cheaper hash columns for imports (see bench/README_traffic.md, 2026-12-02).

- The query, document and item hashes compare in the "C" collation on PostgreSQL: they are
  lowercase hex, so equality and order are the same as under the database's default collation,
  but every index comparison is a memcmp instead of a locale-aware strcoll.
- The item hash loses its unique B-tree (item_unique_pair already makes items unique, and the
  hash is a function of that pair) and gets a hash index for lookups by hash (label imports).

Both are PostgreSQL-only SQL; SQLite (the embedded default) gets a plain index on the item hash.
"""

from django.db import migrations, models

HASH_COLUMNS = (("traffic_query", "text_hash"), ("traffic_document", "content_hash"), ("traffic_item", "hash"))


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for table, column in HASH_COLUMNS:
            schema_editor.execute(f'ALTER TABLE {table} ALTER COLUMN {column} TYPE varchar(64) COLLATE "C"')
        schema_editor.execute("CREATE INDEX traffic_item_hash ON traffic_item USING hash (hash)")
    else:
        schema_editor.execute("CREATE INDEX traffic_item_hash ON traffic_item (hash)")


def backwards(apps, schema_editor):
    schema_editor.execute("DROP INDEX traffic_item_hash")
    if schema_editor.connection.vendor == "postgresql":
        for table, column in HASH_COLUMNS:
            schema_editor.execute(f'ALTER TABLE {table} ALTER COLUMN {column} TYPE varchar(64) COLLATE "default"')


class Migration(migrations.Migration):

    dependencies = [
        ("traffic", "0003_entry_fk_indexes"),
    ]

    operations = [
        migrations.AlterField(
            model_name="item",
            name="hash",
            field=models.CharField(max_length=64),
        ),
        migrations.RunPython(forwards, backwards),
    ]
