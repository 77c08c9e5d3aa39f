"""Bulk inserts that skip the rows a unique constraint already holds, at COPY speed on PostgreSQL.

`insert_ignoring_conflicts(objs)` does what `Model.objects.bulk_create(objs, ignore_conflicts=True)`
does — new rows in, rows whose unique key exists already silently left out, auto_now(_add) filled —
at a fraction of the CPU per row on PostgreSQL: the rows are streamed with COPY (the values prepared
by the fields themselves, as Django's INSERT would). COPY cannot skip a conflicting row, and skipping
is what makes a redelivered judge chunk harmless: a batch that meets a unique violation is rolled
back and sent again through a temporary staging table and one `INSERT … SELECT … ON CONFLICT DO
NOTHING`. Django's INSERT compiler spends ~150-250 µs of CPU per 24-column row building and binding
placeholders; COPY hands the server one tab-separated line per row (BENCHMARKS.md "Scale: 10M
judgments").

Other databases (the embedded SQLite) take `bulk_create(..., ignore_conflicts=True)` unchanged.

The staging table is a session's TEMPORARY table created on first use (`ON COMMIT DELETE ROWS`, and
emptied after each move), so it costs no WAL, is invisible to other sessions, and works behind a
transaction-pooling proxy: every call creates it if the session at hand lacks it, in the same
transaction that uses it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

from django.db import IntegrityError, connections, models, transaction
from psycopg import errors as psycopg_errors

# Field types whose Python value every driver takes as it is; the others go through get_db_prep_save
# (JSON, datetimes on SQLite, decimals …), exactly as Django's own INSERT would prepare them.
PLAIN_TYPES = {"AutoField", "BigAutoField", "SmallAutoField", "IntegerField", "BigIntegerField", "SmallIntegerField",
               "PositiveIntegerField", "PositiveBigIntegerField", "PositiveSmallIntegerField", "CharField",
               "TextField", "SlugField", "URLField", "EmailField", "BooleanField", "FloatField"}
AUTO_TYPES = {"AutoField", "BigAutoField", "SmallAutoField"}  # numbered by the table: never copied


def prep_target(field: models.Field) -> models.Field | None:
    """The field whose get_db_prep_save turns `field`'s Python value into what the driver is given
    (a relation's target), or None when the value goes as it is (the common case, kept free of a
    call per value)."""
    target = field.target_field if field.is_relation else field
    return None if target.get_internal_type() in PLAIN_TYPES else target


def field_prep(field: models.Field, connection: Any) -> Callable[[Any], Any] | None:
    """`prep_target` as a function of the value for one connection, or None."""
    target = prep_target(field)
    return None if target is None else (lambda value: target.get_db_prep_save(value, connection))


class _CopyPlan:
    """The SQL and field preparation for one model on one connection alias, built once."""

    def __init__(self, model: type[models.Model], alias: str) -> None:
        quote = connections[alias].ops.quote_name
        # Every concrete column but an auto primary key, which the target table numbers itself.
        fields = [f for f in model._meta.concrete_fields
                  if not (f.primary_key and f.get_internal_type() in AUTO_TYPES)]
        self.values = operator.attrgetter(*(f.attname for f in fields))
        # Only the fields whose pre_save does something (auto_now, auto_now_add) are asked, and only
        # those that need it are prepared: a call per value otherwise costs more than the COPY.
        self.pre_save = [(i, f) for i, f in enumerate(fields) if type(f).pre_save is not models.Field.pre_save]
        self.targets = [(i, t) for i, t in enumerate(map(prep_target, fields)) if t is not None]
        columns = ", ".join(quote(f.column) for f in fields)
        table = quote(model._meta.db_table)
        stage = quote(f"sage_stage_{model._meta.db_table}")
        self.copy_sql = f"COPY {table} ({columns}) FROM STDIN"
        self.create_sql = (f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS "
                           f"SELECT {columns} FROM {table} WITH NO DATA")
        self.stage_sql = f"COPY {stage} ({columns}) FROM STDIN"
        self.move_sql = f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {stage} ON CONFLICT DO NOTHING"
        self.empty_sql = f"DELETE FROM {stage}"

    def row(self, obj: models.Model, connection: Any) -> list[Any]:
        values = list(self.values(obj))
        for i, field in self.pre_save:
            values[i] = field.pre_save(obj, True)  # fills auto_now_add, as bulk_create does
        for i, target in self.targets:
            if values[i] is not None:
                values[i] = target.get_db_prep_save(values[i], connection)
        return values


BATCH = 10_000  # rows per COPY: bounds the rows prepared at a time and a conflict's retry

# Per model and alias: the plan holds no connection (they are per thread), only SQL and fields.
_plans: dict[tuple[type[models.Model], str], _CopyPlan] = {}


def insert_ignoring_conflicts(objs: Sequence[models.Model], *, using: str = "default") -> int | None:
    """Insert `objs` (instances of one model, primary keys unset), leaving out those that conflict
    with a unique constraint, all or nothing. Returns the number inserted on PostgreSQL, None
    elsewhere (unknown)."""
    if not objs:
        return 0
    model = type(objs[0])
    connection = connections[using]
    if connection.vendor != "postgresql":
        model._default_manager.using(using).bulk_create(objs, ignore_conflicts=True)
        return None
    plan = _plans.get((model, using))
    if plan is None:
        plan = _plans[(model, using)] = _CopyPlan(model, using)
    inserted = 0
    with transaction.atomic(using=using) if len(objs) > BATCH else nullcontext():
        for start in range(0, len(objs), BATCH):
            inserted += _copy_batch(plan, [plan.row(obj, connection) for obj in objs[start:start + BATCH]], using)
    return inserted


def _copy_batch(plan: _CopyPlan, rows: list[list[Any]], using: str) -> int:
    connection = connections[using]
    # Optimistic: straight into the table. A conflict is rare (a redelivered chunk, a retried
    # import) and aborts the COPY; its transaction (or savepoint, in the caller's) rolls back and
    # the rows go through the staging table, which skips the ones the table holds.
    try:
        # wrap_database_errors: a COPY's errors are psycopg's own otherwise, not Django's.
        with transaction.atomic(using=using), connection.cursor() as cursor, connection.wrap_database_errors:
            with cursor.copy(plan.copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
        return len(rows)
    except IntegrityError as exc:
        if not isinstance(exc.__cause__, psycopg_errors.UniqueViolation):
            raise
    with transaction.atomic(using=using), connection.cursor() as cursor, connection.wrap_database_errors:
        cursor.execute(plan.create_sql)
        with cursor.copy(plan.stage_sql) as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(plan.move_sql)
        moved = cursor.rowcount
        cursor.execute(plan.empty_sql)  # the caller's transaction may go on and stage more
    return moved
