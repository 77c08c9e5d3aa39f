"""Import speed (issue 4): drop indexes that a composite index already covers and, on PostgreSQL,
compare the sha256 hex columns under the "C" collation.

The three hash columns stay `varchar(64)` holding hex strings (other apps read them as such). On
PostgreSQL their unique indexes are rebuilt with COLLATE "C" (memcmp instead of strcoll for every
comparison), which also makes Django's extra `varchar_pattern_ops` ("_like") index on each of them
redundant: a "C" btree serves `LIKE 'prefix%'` itself. SQLite is left as it is.
"""

from django.db import migrations, models
import django.db.models.deletion

HASH_COLUMNS = (("traffic_query", "text_hash"), ("traffic_document", "content_hash"), ("traffic_item", "hash"))


def _like_indexes(cursor, table: str, column: str) -> list[str]:
    cursor.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s "
        "AND indexdef LIKE %s", [table, f"%({column} varchar_pattern_ops)%"],
    )
    return [name for (name,) in cursor.fetchall()]


def hashes_to_c_collation(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table, column in HASH_COLUMNS:
            for index in _like_indexes(cursor, table, column):
                cursor.execute(f'DROP INDEX IF EXISTS "{index}"')
            cursor.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE varchar(64) COLLATE "C"')


def hashes_to_default_collation(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table, column in HASH_COLUMNS:
            cursor.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE varchar(64) COLLATE "default"')
            cursor.execute(f'CREATE INDEX IF NOT EXISTS "{table}_{column}_like" ON "{table}" '
                           f'("{column}" varchar_pattern_ops)')


class Migration(migrations.Migration):

    dependencies = [
        ("traffic", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="item",
            name="query",
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT,
                                    related_name="items", to="traffic.query"),
        ),
        migrations.AlterField(
            model_name="resultentry",
            name="traffic_import",
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                    related_name="entries", to="traffic.trafficimport"),
        ),
        migrations.AlterField(
            model_name="resultentry",
            name="variant",
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT,
                                    related_name="entries", to="traffic.variant"),
        ),
        migrations.RunPython(hashes_to_c_collation, hashes_to_default_collation, elidable=False),
    ]
