"""Two judgment indexes fewer: the cache key's LIKE twin and the plain run index.

At 10M judgments they were 1.2 GiB of the table's 3.5 GiB of indexes, and each cost its share of
every insert (BENCHMARKS.md, "Scale: 10M judgments"). The cache is only looked up by equality, and
every read by run can use the unique (run, item) or the (run, status) index, which lead with run.

On PostgreSQL the existing equality index on cache_key is renamed, not rebuilt, so the migration
takes milliseconds on a large table; SQLite (which cannot rename an index) builds it anew.
"""

from django.db import migrations, models


def _indexes_on(schema_editor, table: str, columns: list[str]) -> list[str]:
    with schema_editor.connection.cursor() as cursor:
        constraints = schema_editor.connection.introspection.get_constraints(cursor, table)
    return sorted(name for name, c in constraints.items()
                  if c["columns"] == columns and c["index"] and not c["unique"] and not c["primary_key"])


def forwards(apps, schema_editor):
    Judgment = apps.get_model("judges", "Judgment")
    table = Judgment._meta.db_table
    quote = schema_editor.quote_name
    old = _indexes_on(schema_editor, table, ["cache_key"])
    keep = next((n for n in old if not n.endswith("_like")), None)
    for name in old:
        if name != keep or schema_editor.connection.vendor != "postgresql":
            schema_editor.execute(f"DROP INDEX {quote(name)}")
    if keep and schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER INDEX {quote(keep)} RENAME TO {quote('judgment_cache_key')}")
    else:
        schema_editor.execute(f"CREATE INDEX {quote('judgment_cache_key')} ON {quote(table)} ({quote('cache_key')})")
    for name in _indexes_on(schema_editor, table, ["run_id"]):
        schema_editor.execute(f"DROP INDEX {quote(name)}")


def backwards(apps, schema_editor):
    # The indexes as 0001 made them, under the names Django gave them.
    quote = schema_editor.quote_name
    table = quote(apps.get_model("judges", "Judgment")._meta.db_table)
    schema_editor.execute(f"DROP INDEX {quote('judgment_cache_key')}")
    schema_editor.execute(f"CREATE INDEX {quote('judges_judgment_cache_key_42a71f57')} ON {table} ({quote('cache_key')})")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"CREATE INDEX {quote('judges_judgment_cache_key_42a71f57_like')} ON {table} "
                              f"({quote('cache_key')} varchar_pattern_ops)")
    schema_editor.execute(f"CREATE INDEX {quote('judges_judgment_run_id_676cbef1')} ON {table} ({quote('run_id')})")


class Migration(migrations.Migration):
    dependencies = [("judges", "0004_injection_check")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="judgment", name="run",
                    field=models.ForeignKey(db_index=False, on_delete=models.deletion.CASCADE,
                                            related_name="judgments", to="judges.judgerun"),
                ),
                migrations.AlterField(model_name="judgment", name="cache_key", field=models.CharField(max_length=64)),
                migrations.AddIndex(model_name="judgment",
                                    index=models.Index(fields=["cache_key"], name="judgment_cache_key")),
            ],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
