"""Backup and move: every governed record of an instance as one JSONL stream, and back into an empty one.

The stream (gzip-compressed when the file name ends in `.gz`) is a header line, then one line per row,
models in dependency order, rows by primary key:

    {"format": "sage-backup", "version": 1, "sage_version": "0.1.0", "created_at": "…", "database": "postgresql",
     "migrations": {"judges": ["0001_initial", …], …}, "models": {"auth.user": 3, …}, "files": [{"path", "size", "sha256"}]}
    {"model": "judges.judgment", "pk": 17, "fields": {"run": 3, "labels": {"relevance": 2}, …}}

What it guarantees, and how:

- Nothing is forgotten: the models come from the app registry, and every model not in EXCLUDED is
  exported. GOVERNED lists the models someone has looked at; tests/test_backup.py fails, naming it, on
  a model in neither list, so a new model gets a decision rather than a silent default.
- One consistent picture: the export reads inside one snapshot (REPEATABLE READ on PostgreSQL, one
  read transaction on SQLite, which does not block writers under WAL) and streams each table in
  chunks, so memory stays bounded by a chunk whatever the size of the database.
- All or nothing: the import writes into an empty instance only, in one transaction; a bad line
  ("line N: …"), a missing row at the end of a truncated file, or a broken reference rolls everything
  back. Primary keys are kept, so every foreign key holds, and the sequences are reset afterwards.
- Exact records: rows go straight into the tables (COPY on PostgreSQL, executemany on SQLite, values
  prepared by the fields as Django's own INSERT would): no save(), no signals, no auto_now/auto_now_add,
  so timestamps, published versions and hashes come back as they were.
  PostgreSQL's immutability trigger on published policy versions guards UPDATEs, which this never issues.
- Content types, permissions and the role groups already exist in every migrated instance, under ids
  of their own: a reference to one is written as its natural key (["analyst"]) and resolved on import.

Student weights live in files under SAGE_DATA_DIR, not in the database: the header lists each file of
each student's `model_dir` with its size and sha256; `files=True` also packs them into `<path>.files.tar`,
which the import can unpack (checked against those checksums) into the new data directory.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import math
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Any

import orjson
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.color import no_style
from django.db import DatabaseError, connections, models, transaction
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone
from django.utils.duration import duration_iso_string

from sage.bulk import field_prep

FORMAT = "sage-backup"
FORMAT_VERSION = 1
CHUNK = 2_000  # rows per server-side fetch on export
BATCH = 1_000  # rows per COPY / executemany on import

# Every model someone decided belongs in a backup. Auto-created many-to-many tables are listed too.
GOVERNED: tuple[str, ...] = (
    "auth.user", "auth.group", "auth.user_groups", "auth.user_user_permissions", "auth.group_permissions",
    "admin.logentry",
    "sage.apitoken",
    "policy.surface", "policy.policy", "policy.policyversion", "policy.policyclause",
    "traffic.variant", "traffic.query", "traffic.document", "traffic.item", "traffic.trafficimport",
    "traffic.resultentry", "traffic.sample", "traffic.sampleitem",
    "review.reviewqueue", "review.reviewqueue_reviewers", "review.assignment", "review.humanlabel",
    "review.externalassessor",
    "precedent.precedent", "precedent.precedentrevision", "precedent.precedentset",
    "judges.judge", "judges.judgeversion", "judges.judgerun", "judges.judgment", "judges.injectioncheck",
    "calibration.goldlabeller", "calibration.disagreement", "calibration.triagedecision",
    "distill.trainingset", "distill.trainingsetsource", "distill.trainingexample", "distill.studentmodel",
    "distill.studentevaluation", "distill.promotionbar", "distill.promotiondecision",
    "comparisons.comparison",
    "gates.scopedtoken", "gates.gate", "gates.gaterun",
)

# Models left out, each with the reason. An app label alone ("axes") excludes all of its models.
EXCLUDED: dict[str, str] = {
    "contenttypes.contenttype": "created by migrate on every instance; rows refer to it by natural key",
    "auth.permission": "created by migrate on every instance; rows refer to it by natural key",
    "sessions.session": "live logins: a moved instance logs everyone in again",
    "sage.workerping": "a broker round-trip check, meaningless on another host",
    "precedent.precedentembedding": "a cache of MiniLM vectors, recomputed on first use",
    "calibration.agreementsnapshot": "a cache of agreement figures, recomputed when a page needs them",
    "axes": "login-throttling records (django-axes): failed attempts and lockouts are not carried over",
}

# Models a migrated instance already holds rows of (the role groups, by sage/0001): matched by natural key
# on import, created when missing; their primary keys are not written, since the new instance has its own.
SEEDED: dict[str, tuple[str, ...]] = {"auth.group": ("name",)}
# Models referred to by natural key but not exported at all.
REFERENCED = ("contenttypes.contenttype", "auth.permission")


class BackupError(Exception):
    """A refused export or import; the message says why (and on which line)."""


def _excluded(label: str) -> str | None:
    return EXCLUDED.get(label) or EXCLUDED.get(label.split(".", 1)[0])


def exported_models() -> list[type[models.Model]]:
    """Every model of the registry that is not excluded, parents before the rows that point at them."""
    candidates = [m for m in apps.get_models(include_auto_created=True)
                  if m._meta.managed and not m._meta.proxy and not _excluded(m._meta.label_lower)]
    return _dependency_order(candidates)


def unclassified_models() -> list[str]:
    """Models in neither GOVERNED nor EXCLUDED: exported (the safe default), but nobody has decided."""
    return sorted(m._meta.label_lower for m in apps.get_models(include_auto_created=True)
                  if m._meta.label_lower not in GOVERNED and not _excluded(m._meta.label_lower))


def _dependency_order(candidates: list[type[models.Model]]) -> list[type[models.Model]]:
    """Registry order, moved so that a model comes after those it points at where the graph allows.
    Cycles (a judge version names a student, whose training set names judge runs) are fine: the
    foreign keys are checked at commit (deferred on PostgreSQL and SQLite), not row by row."""
    remaining = list(candidates)
    ordered: list[type[models.Model]] = []
    while remaining:
        placed = {m for m in ordered}
        for model in remaining:
            parents = {f.related_model for f in model._meta.concrete_fields if f.is_relation}
            if all(p is model or p in placed or p not in remaining for p in parents):
                break
        else:
            model = remaining[0]  # a cycle: take the first in registry order
        ordered.append(model)
        remaining.remove(model)
    return ordered


# --- values -----------------------------------------------------------------------------------------

@dataclass
class _Column:
    field: models.Field
    encode: Callable[[Any], Any] | None
    decode: Callable[[Any], Any] | None
    natural: str | None = None  # label of the model a natural-key reference points at


def _float_encode(value: float) -> Any:
    # JSON has no NaN or infinity: they travel as the strings FloatField.to_python reads back.
    return value if math.isfinite(value) else str(value)


def _columns(model: type[models.Model]) -> list[_Column]:
    columns = []
    for f in model._meta.concrete_fields:
        if f.primary_key:  # written as the record's pk
            continue
        if f.is_relation and f.related_model._meta.label_lower in (*REFERENCED, *SEEDED):
            columns.append(_Column(f, None, None, f.related_model._meta.label_lower))
            continue
        kind = f.get_internal_type()
        to_python = f.to_python
        if kind == "DecimalField":
            columns.append(_Column(f, str, to_python))
        elif kind == "BinaryField":
            columns.append(_Column(f, lambda v: base64.b64encode(bytes(v)).decode("ascii"), to_python))
        elif kind == "DurationField":
            columns.append(_Column(f, duration_iso_string, to_python))
        elif kind == "FloatField":
            columns.append(_Column(f, _float_encode, to_python))
        elif kind in ("DateTimeField", "DateField", "TimeField", "UUIDField"):
            columns.append(_Column(f, None, to_python))  # orjson writes them in ISO 8601, microseconds kept
        else:
            columns.append(_Column(f, None, None))  # JSON-native: text, numbers, booleans, ids, JSON
    return columns


def _pk_column(model: type[models.Model]) -> models.Field:
    return model._meta.pk


class _NaturalKeys:
    """pk <-> natural key of the referenced models (a few hundred rows at most), per database."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self._to_key: dict[str, dict[Any, list[Any]]] = {}
        self._to_pk: dict[str, dict[tuple[Any, ...], Any]] = {}

    def _load(self, label: str) -> None:
        model = apps.get_model(label)
        rows = model._default_manager.db_manager(self.alias).all()
        if label == "auth.permission":
            rows = rows.select_related("content_type")
        self._to_key[label] = {obj.pk: list(obj.natural_key()) for obj in rows}
        self._to_pk[label] = {tuple(key): pk for pk, key in self._to_key[label].items()}

    def key(self, label: str, pk: Any) -> list[Any] | None:
        if pk is None:
            return None
        if label not in self._to_key:
            self._load(label)
        return self._to_key[label][pk]

    def pk(self, label: str, key: Any) -> Any:
        if key is None:
            return None
        if label not in self._to_pk:
            self._load(label)
        found = self._to_pk[label].get(tuple(key)) if isinstance(key, list) else None
        if found is None:
            raise BackupError(f"{label} {key!r} does not exist in this instance")
        return found

    def remember(self, label: str, key: list[Any], pk: Any) -> None:
        self._to_pk.setdefault(label, {})[tuple(key)] = pk
        self._to_key.setdefault(label, {})[pk] = key


# --- export -----------------------------------------------------------------------------------------

def sage_version() -> str:
    try:
        return version("sage")
    except PackageNotFoundError:
        return "unknown"


def migration_state(alias: str = "default") -> dict[str, list[str]]:
    """The applied migrations of this database, per app, sorted."""
    state: dict[str, list[str]] = {}
    for app, name in MigrationRecorder(connections[alias]).applied_migrations():
        state.setdefault(app, []).append(name)
    return {app: sorted(names) for app, names in sorted(state.items())}


@contextmanager
def _snapshot(alias: str) -> Iterator[None]:
    """One consistent read of every table: rows added while the export runs are left out whole."""
    connection = connections[alias]
    if connection.in_atomic_block:  # the caller's transaction (a test) is the snapshot
        yield
        return
    if connection.vendor == "postgresql":
        with transaction.atomic(using=alias):
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield
        return
    if connection.vendor == "sqlite":
        # A deferred BEGIN: under WAL a reader sees one snapshot and blocks no writer (atomic() would
        # BEGIN IMMEDIATE here and hold the write lock for the whole export).
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("BEGIN DEFERRED")
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("ROLLBACK")
        return
    yield


def _student_files(alias: str) -> list[dict[str, Any]]:
    """Every file under each student's model folder, relative to SAGE_DATA_DIR, with size and sha256."""
    from distill.models import StudentModel

    data_dir = Path(settings.DATA_DIR)
    files: list[dict[str, Any]] = []
    folders = (StudentModel.objects.using(alias).exclude(model_dir="").order_by("pk")
               .values_list("model_dir", flat=True))
    for folder in folders:
        root = data_dir / folder
        if not root.is_dir():
            files.append({"path": folder, "missing": True})
            continue
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            digest = hashlib.sha256()
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            files.append({"path": path.relative_to(data_dir).as_posix(), "size": path.stat().st_size,
                          "sha256": digest.hexdigest()})
    return files


@dataclass
class ExportReport:
    records: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    files: list[dict[str, Any]] = field(default_factory=list)
    files_archive: Path | None = None
    unclassified: list[str] = field(default_factory=list)


def _open_write(path: Path, *, gzipped: bool) -> IO[bytes]:
    if gzipped:
        # Level 1: several times faster than the default for about the same size on this text.
        return gzip.open(path, "wb", compresslevel=1)
    return path.open("wb")


def _open_read(path: Path) -> IO[bytes]:
    with path.open("rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else path.open("rb")


def sage_export(*, path: Path, files: bool = False, alias: str = "default",
                progress: Callable[[int], None] | None = None,
                on_total: Callable[[int], None] | None = None) -> ExportReport:
    """Write every governed record to `path` (JSONL, gzip when it ends in .gz); `files` also packs the
    students' model folders into `<path>.files.tar`. `on_total` hears the record count before the
    rows; `progress` hears how many rows were written since it was last called."""
    report = ExportReport(unclassified=unclassified_models())
    keys = _NaturalKeys(alias)
    model_list = exported_models()
    tmp = path.with_name(f".{path.name}.partial")
    with _snapshot(alias):
        for model in model_list:
            report.counts[model._meta.label_lower] = model._base_manager.using(alias).count()
        report.records = sum(report.counts.values())
        report.files = _student_files(alias)
        header = {"format": FORMAT, "version": FORMAT_VERSION, "sage_version": sage_version(),
                  "created_at": timezone.now(), "database": connections[alias].vendor,
                  "migrations": migration_state(alias), "models": report.counts, "files": report.files}
        if on_total:
            on_total(report.records)
        # Written beside the target and renamed at the end: a crashed export leaves no half file under its name.
        with _open_write(tmp, gzipped=path.suffix == ".gz") as out:
            out.write(orjson.dumps(header) + b"\n")
            for model in model_list:
                _export_model(out, model, alias, keys, progress)
    os.replace(tmp, path)
    if files:
        report.files_archive = _pack_files(path, report.files)
    return report


def _export_model(out: IO[bytes], model: type[models.Model], alias: str, keys: _NaturalKeys,
                  progress: Callable[[int], None] | None) -> None:
    label = model._meta.label_lower
    columns = _columns(model)
    pk_field = _pk_column(model)
    seeded = label in SEEDED
    attnames = [pk_field.attname, *(c.field.attname for c in columns)]
    rows = model._base_manager.using(alias).order_by(*(SEEDED[label] if seeded else ("pk",)))
    pending = 0
    for row in rows.values_list(*attnames).iterator(chunk_size=CHUNK):
        values: dict[str, Any] = {}
        for column, value in zip(columns, row[1:]):
            if value is None:
                values[column.field.name] = None
            elif column.natural:
                values[column.field.name] = keys.key(column.natural, value)
            elif column.encode:
                values[column.field.name] = column.encode(value)
            else:
                values[column.field.name] = value
        pk = row[0]
        if pk_field.is_relation and pk_field.related_model._meta.label_lower in (*REFERENCED, *SEEDED):
            pk = keys.key(pk_field.related_model._meta.label_lower, pk)
        record = {"model": label, "pk": None if seeded else pk, "fields": values}
        out.write(orjson.dumps(record) + b"\n")
        pending += 1
        if progress and pending >= 1000:
            progress(pending)
            pending = 0
    if progress and pending:
        progress(pending)


def _pack_files(path: Path, listed: list[dict[str, Any]]) -> Path:
    archive = path.with_name(f"{path.name}.files.tar")
    data_dir = Path(settings.DATA_DIR)
    with tarfile.open(archive, "w") as tar:
        for entry in listed:
            if not entry.get("missing"):
                tar.add(data_dir / entry["path"], arcname=entry["path"], recursive=False)
    return archive


# --- import -----------------------------------------------------------------------------------------

@dataclass
class ImportReport:
    records: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    files_restored: int = 0
    files_expected: list[dict[str, Any]] = field(default_factory=list)


def read_header(path: Path) -> dict[str, Any]:
    with _open_read(path) as stream:
        return _parse_header(stream.readline())


def _parse_header(raw: bytes) -> dict[str, Any]:
    try:
        header = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BackupError(f"line 1: not a SAGE backup header ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BackupError("line 1: not a SAGE backup (no sage-backup header)")
    if header.get("version") != FORMAT_VERSION:
        raise BackupError(f"line 1: backup format version {header.get('version')!r}; this SAGE reads "
                          f"version {FORMAT_VERSION}")
    if (not isinstance(header.get("models"), dict) or not isinstance(header.get("migrations"), dict)
            or not all(isinstance(n, int) for n in header["models"].values())):
        raise BackupError("line 1: the header lacks its model counts or migration state")
    return header


def _check_migrations(header: dict[str, Any], alias: str) -> None:
    theirs = {app: set(names) for app, names in header["migrations"].items()}
    ours = {app: set(names) for app, names in migration_state(alias).items()}
    problems = []
    for app in sorted(set(theirs) | set(ours)):
        missing_here = sorted(theirs.get(app, set()) - ours.get(app, set()))
        not_there = sorted(ours.get(app, set()) - theirs.get(app, set()))
        if missing_here:
            problems.append(f"{app}: the backup has {', '.join(missing_here)}, not applied here")
        if not_there:
            problems.append(f"{app}: this instance has {', '.join(not_there)}, which the backup lacks")
    if problems:
        raise BackupError("the migration state differs from the backup's (run the same SAGE version and "
                          "`manage.py migrate` on both sides): " + "; ".join(problems[:6])
                          + (f"; and {len(problems) - 6} more" if len(problems) > 6 else ""))


def _check_empty(model_list: list[type[models.Model]], alias: str) -> None:
    for model in model_list:
        if model._meta.label_lower in SEEDED:
            continue
        if model._base_manager.using(alias).exists():
            raise BackupError(f"this instance is not empty: table {model._meta.db_table} "
                              f"({model._meta.label_lower}) has rows. Import only into a freshly migrated database.")


class _Batch:
    """Rows of one model waiting for their INSERT, with the lines they came from.

    Rows are written without model instances or Django's INSERT compiler: COPY on PostgreSQL, one
    executemany on SQLite, with values prepared by the fields themselves. That is what bulk_create
    (or loaddata's raw save) ends up sending, minus its per-value Python overhead, and like a raw
    save it runs no save(), no signals and no auto_now: the rows arrive exactly as exported.
    """

    def __init__(self, model: type[models.Model], alias: str) -> None:
        self.model = model
        self.alias = alias
        connection = connections[alias]
        self.fields = list(model._meta.concrete_fields)
        self.preps = [field_prep(f, connection) for f in self.fields]
        self.rows: list[list[Any]] = []
        self.first_line = 0
        quote = connection.ops.quote_name
        columns = ", ".join(quote(f.column) for f in self.fields)
        table = quote(model._meta.db_table)
        self.copy_sql = f"COPY {table} ({columns}) FROM STDIN"
        self.insert_sql = f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(self.fields))})"

    def add(self, line: int, values: list[Any]) -> None:
        if not self.rows:
            self.first_line = line
        for i, prep in enumerate(self.preps):
            if prep is not None and values[i] is not None:
                values[i] = prep(values[i])
        self.rows.append(values)

    def flush(self, last_line: int) -> None:
        if not self.rows:
            return
        connection = connections[self.alias]
        try:
            # A failure ends the import: the enclosing transaction rolls back and nothing else runs on it.
            with connection.cursor() as cursor:
                if connection.vendor == "postgresql":
                    with cursor.copy(self.copy_sql) as copy:
                        for row in self.rows:
                            copy.write_row(row)
                else:
                    cursor.executemany(self.insert_sql, self.rows)
        except DatabaseError as exc:
            raise BackupError(f"lines {self.first_line}-{last_line} ({self.model._meta.label_lower}): "
                              f"{str(exc).strip().splitlines()[0]}") from None
        self.rows = []


def sage_import(*, path: Path, files: bool = False, alias: str = "default",
                progress: Callable[[int], None] | None = None,
                on_total: Callable[[int], None] | None = None) -> ImportReport:
    """Load a backup written by sage_export into this (empty, identically migrated) instance, all or
    nothing. `files` also unpacks `<path>.files.tar` into SAGE_DATA_DIR, checked against the header."""
    with _open_read(path) as stream:
        header = _parse_header(stream.readline())
        _check_migrations(header, alias)
        ours = {m._meta.label_lower: m for m in exported_models()}
        unknown = [label for label in header["models"] if label not in ours]
        if unknown:
            raise BackupError(f"line 1: the backup holds models this instance does not export: {', '.join(unknown)}")
        model_list = [ours[label] for label in header["models"]]
        _check_empty(list(ours.values()), alias)
        report = ImportReport(files_expected=[f for f in header.get("files", []) if not f.get("missing")])
        staged = _stage_files(path, report.files_expected) if files else None
        try:
            if on_total:
                on_total(sum(header["models"].values()))
            with transaction.atomic(using=alias):
                _import_rows(stream, header, ours, alias, report, progress)
                try:
                    connections[alias].check_constraints(table_names=[m._meta.db_table for m in model_list])
                except DatabaseError as exc:
                    raise BackupError(f"a reference does not hold: {exc}") from None
                _reset_sequences(model_list, alias)
            if staged is not None:
                try:
                    report.files_restored = _place_files(staged, report.files_expected)
                except OSError as exc:
                    # After the commit: the records are in, so "nothing imported" would be false.
                    raise FilesNotPlaced(f"the records are imported, but placing the student files failed ({exc}); "
                                         "copy students/ from the old host by hand") from None
        finally:
            if staged is not None:
                shutil.rmtree(staged, ignore_errors=True)
    return report


def _import_rows(stream: IO[bytes], header: dict[str, Any], ours: dict[str, type[models.Model]], alias: str,
                 report: ImportReport, progress: Callable[[int], None] | None) -> None:
    keys = _NaturalKeys(alias)
    expected: dict[str, int] = header["models"]
    columns = {label: _columns(ours[label]) for label in expected}
    batch: _Batch | None = None
    done: set[str] = set()
    line_no = 1
    pending = 0
    for line_no, raw in enumerate(stream, start=2):
        if not raw.strip():
            continue
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BackupError(f"line {line_no}: not valid JSON ({exc}); the file is damaged or truncated") from None
        if not isinstance(record, dict) or set(record) != {"model", "pk", "fields"}:
            raise BackupError(f"line {line_no}: a record is an object with model, pk and fields")
        label = record["model"]
        if label not in expected:
            raise BackupError(f"line {line_no}: model {label!r} is not in the header")
        if batch is None or batch.model._meta.label_lower != label:
            if label in done:
                raise BackupError(f"line {line_no}: {label} rows appear again after other models' rows")
            if batch is not None:
                batch.flush(line_no - 1)
                done.add(batch.model._meta.label_lower)
            batch = _Batch(ours[label], alias)
        report.counts[label] = report.counts.get(label, 0) + 1
        if report.counts[label] > expected[label]:
            raise BackupError(f"line {line_no}: more {label} rows than the header's {expected[label]}")
        try:
            values = _build(ours[label], label, columns[label], record, keys, alias)
            if values is not None:
                batch.add(line_no, values)
        except (BackupError, ValidationError, ValueError, TypeError) as exc:
            message = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
            raise BackupError(f"line {line_no}: {label} {record.get('pk')!r}: {message}") from None
        if len(batch.rows) >= BATCH:
            batch.flush(line_no)
        pending += 1
        if progress and pending >= 1000:
            progress(pending)
            pending = 0
    if batch is not None:
        batch.flush(line_no)
    if progress and pending:
        progress(pending)
    short = [f"{label} {report.counts.get(label, 0)} of {n}" for label, n in expected.items()
             if report.counts.get(label, 0) != n]
    if short:
        raise BackupError(f"line {line_no}: the file ends early (truncated?): {', '.join(short[:5])}")
    report.records = sum(report.counts.values())


def _build(model: type[models.Model], label: str, columns: list[_Column], record: dict[str, Any],
           keys: _NaturalKeys, alias: str) -> list[Any] | None:
    """The row's values in concrete-field order (None for a seeded row, matched or created here)."""
    values = record["fields"]
    if not isinstance(values, dict):
        raise BackupError("fields must be an object")
    names = {c.field.name for c in columns}
    if set(values) != names:
        missing, extra = sorted(names - set(values)), sorted(set(values) - names)
        raise BackupError(" ".join(filter(None, [f"missing fields: {', '.join(missing)}." if missing else "",
                                                 f"unknown fields: {', '.join(extra)}." if extra else ""])))
    decoded: dict[str, Any] = {}
    for column in columns:
        value = values[column.field.name]
        if value is not None:
            if column.natural:
                value = keys.pk(column.natural, value)
            elif column.decode:
                value = column.decode(value)
        decoded[column.field.attname] = value
    if label in SEEDED:
        # The role groups exist already (sage/0001): match by natural key, create what is missing.
        lookup = {name: decoded[name] for name in SEEDED[label]}
        obj, _ = model._base_manager.using(alias).get_or_create(**lookup, defaults=decoded)
        keys.remember(label, [decoded[name] for name in SEEDED[label]], obj.pk)
        return None
    pk_field = model._meta.pk
    pk = record["pk"]
    if pk is None:
        raise BackupError("no primary key")
    if pk_field.is_relation and pk_field.related_model._meta.label_lower in (*REFERENCED, *SEEDED):
        pk = keys.pk(pk_field.related_model._meta.label_lower, pk)
    elif not pk_field.is_relation:
        pk = pk_field.to_python(pk)
    decoded[pk_field.attname] = pk
    return [decoded[f.attname] for f in model._meta.concrete_fields]


def _reset_sequences(model_list: list[type[models.Model]], alias: str) -> None:
    """Point each table's id sequence past the imported ids (PostgreSQL; SQLite follows max(rowid) itself)."""
    connection = connections[alias]
    statements = connection.ops.sequence_reset_sql(no_style(), model_list)
    if statements:
        with connection.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)


# --- student files ------------------------------------------------------------------------------------

def _stage_files(path: Path, expected: list[dict[str, Any]]) -> Path:
    """Unpack `<path>.files.tar` into a folder inside SAGE_DATA_DIR and check every listed file's
    size and sha256 before anything is imported; refuse files that exist already."""
    archive = path.with_name(f"{path.name}.files.tar")
    if not archive.exists():
        raise BackupError(f"--with-files: {archive.name} is not beside the backup")
    data_dir = Path(settings.DATA_DIR)
    listed = {entry["path"]: entry for entry in expected}
    for rel in listed:
        if (data_dir / rel).exists():
            raise BackupError(f"--with-files: {rel} exists already in SAGE_DATA_DIR; move it away first")
    staged = Path(tempfile.mkdtemp(prefix=".sage-import-", dir=data_dir))
    try:
        with tarfile.open(archive, "r") as tar:
            for member in tar:
                if member.name not in listed or not member.isfile():
                    raise BackupError(f"--with-files: {member.name!r} in the archive is not listed in the backup")
                tar.extract(member, staged, filter="data")
        for rel, entry in listed.items():
            target = staged / rel
            if not target.is_file():
                raise BackupError(f"--with-files: {rel} is missing from the archive")
            digest = hashlib.sha256()
            with target.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            if digest.hexdigest() != entry["sha256"] or target.stat().st_size != entry["size"]:
                raise BackupError(f"--with-files: {rel} does not match its checksum in the backup")
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return staged


class FilesNotPlaced(BackupError):
    """The database import committed; only the student files could not be put in place."""


def _place_files(staged: Path, expected: list[dict[str, Any]]) -> int:
    data_dir = Path(settings.DATA_DIR)
    for entry in expected:
        target = data_dir / entry["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged / entry["path"], target)
    return len(expected)


def backup_lines(path: Path) -> Iterator[bytes]:
    """The lines of a backup (gzip or not): what a test compares."""
    with _open_read(path) as stream:
        yield from stream


__all__ = ["BackupError", "EXCLUDED", "FilesNotPlaced", "GOVERNED", "backup_lines", "exported_models", "migration_state",
           "read_header", "sage_export", "sage_import", "unclassified_models"]
