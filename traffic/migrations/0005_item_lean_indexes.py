"""Items keep only the indexes an import cannot do without (see bench/README_traffic.md, 2026-12-02).

- No index on the item hash: its one reader, a label import naming items by hash, resolves a
  whole chunk of a file's hashes in one scan instead (review.services.human_label_import).
- No index on the item's document: nothing reads items by document; Django's PROTECT check on
  deleting a document (an admin-only act) scans instead.

Per 200,000 new items these two cost 0.45 s of a 0.99 s insert
(bench/traffic_insert_floor.py --index-costs).
"""

import django.db.models.deletion
from django.db import migrations, models


def drop_hash_index(apps, schema_editor):
    schema_editor.execute("DROP INDEX IF EXISTS traffic_item_hash")


def create_hash_index(apps, schema_editor):
    using = " USING hash" if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f"CREATE INDEX traffic_item_hash ON traffic_item{using} (hash)")


class Migration(migrations.Migration):

    dependencies = [
        ("traffic", "0004_hash_columns"),
    ]

    operations = [
        migrations.RunPython(drop_hash_index, create_hash_index),
        migrations.AlterField(
            model_name="item",
            name="document",
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT,
                                    related_name="items", to="traffic.document"),
        ),
    ]
