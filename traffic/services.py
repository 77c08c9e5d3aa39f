"""Writes of traffic: variants, file imports (atomic, idempotent, streaming) and sample draws."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, OperationalError, connection, transaction

from policy.models import Surface
from sage.busy import Busy, is_database_busy
from sage.roles import Role, has_role

from . import pgimport, staging
from .models import Document, Sample, SampleItem, TrafficImport, Variant
from .rows import HashingReader, ImportRowError, RowParser, format_for, iter_rows
from .sampling import STRATEGIES, SamplingError, draw_item_ids, traffic_snapshot


class TrafficError(Exception):
    """A problem the user can fix; the message is shown as is."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class TrafficPermissionError(TrafficError):
    pass


def _require_analyst(user: AbstractBaseUser | None) -> None:
    if user is not None and not has_role(user, Role.ANALYST):
        raise TrafficPermissionError("Only analysts and admins can import traffic and draw samples.")


def variant_create(*, surface: Surface, name: str, role: str = Variant.Role.TREATMENT, description: str = "",
                   ramp_percent: Decimal | float = 0, user: AbstractBaseUser | None = None) -> Variant:
    _require_analyst(user)
    variant = Variant(surface=surface, name=name, role=role, description=description[:5000],
                      ramp_percent=Decimal(str(ramp_percent)))
    variant.full_clean(validate_unique=False)
    try:
        with transaction.atomic():
            variant.save()
    except IntegrityError:
        raise TrafficError(f"{surface.name} already has a variant named {name!r}.") from None
    return variant


def variant_get_or_create(*, surface: Surface, name: str, role: str, description: str = "",
                          ramp_percent: float = 0) -> Variant:
    variant = Variant.objects.filter(surface=surface, name=name).first()
    return variant or variant_create(surface=surface, name=name, role=role, description=description,
                                     ramp_percent=ramp_percent)


@dataclass(frozen=True)
class ImportResult:
    traffic_import: TrafficImport
    created: bool  # False: this file was imported before, nothing changed


class _AlreadyImported(Exception):
    pass


def _file_sha256(source: IO[bytes]) -> str | None:
    """Hash a seekable file up front so a re-import is refused before any parsing."""
    try:
        start = source.tell()
        h = hashlib.sha256()
        while chunk := source.read(1 << 20):
            h.update(chunk)
        source.seek(start)
    except (AttributeError, OSError, ValueError):
        return None
    return h.hexdigest()


def traffic_import(*, surface: Surface, source: IO[bytes] | Iterable[bytes], filename: str = "",
                   fmt: str | None = None, user: AbstractBaseUser | None = None,
                   progress: Callable[[int], None] | None = None) -> ImportResult:
    """Import one JSONL/CSV file of result-list rows (format: traffic/rows.py).

    The file is read line by line (a file object or any iterable of byte lines) and never held in
    memory. One transaction: the first bad row raises `TrafficError` naming its line and nothing is
    written. The same file (by sha256) imported again returns the earlier import unchanged.
    """
    _require_analyst(user)
    fmt = fmt or format_for(filename)
    if fmt not in TrafficImport.Format.values:
        raise TrafficError(f"Cannot tell the format of {filename!r}: name it .jsonl or .csv.")
    known = None
    if connection.vendor == "postgresql":
        pgimport.prepare(fmt)
    if hasattr(source, "seek"):
        known = _file_sha256(source)  # type: ignore[arg-type]
        if known is not None:
            existing = TrafficImport.objects.filter(surface=surface, sha256=known).first()
            if existing is not None:
                return ImportResult(existing, created=False)
    reader = HashingReader(source, progress, known_sha256=known)
    variants = dict(Variant.objects.filter(surface=surface).values_list("name", "id"))
    parser = RowParser(variants=variants, adapt_datetime=connection.ops.adapt_datetimefield_value)
    started = time.perf_counter()
    created_by = user if user is not None and user.is_authenticated else None
    try:
        if connection.vendor == "postgresql":
            with transaction.atomic():
                record = _import_record_create(surface=surface, filename=filename, fmt=fmt, user=created_by)
                rows, stats = pgimport.import_rows(fmt, reader, parser, import_id=record.pk)
                _import_record_finish(record, reader=reader, rows=rows, stats=stats, started=started)
        else:
            # Parse into the staging table first (no lock on the database), then wait for this
            # database's import turn and move the rows in one short transaction (traffic.staging).
            flagged: dict[str, str] = {}  # documents that look addressed to a judge (staging.detect_injection)
            rows = staging.stage_rows(staging.detect_injection(iter_rows(fmt, reader, parser), flagged))
            if rows == 0:
                raise TrafficError("The file has no rows.")
            record = _sqlite_move(surface=surface, filename=filename, fmt=fmt, user=created_by, reader=reader,
                                  rows=rows, started=started, flagged=flagged)
    except ImportRowError as exc:
        raise TrafficError(f"Nothing was imported: {exc}", line=exc.line) from None
    except _AlreadyImported:
        # A non-seekable stream, or the same file racing in from another upload: the earlier one counts.
        existing = TrafficImport.objects.get(surface=surface, sha256=reader.hexdigest())
        return ImportResult(existing, created=False)
    return ImportResult(record, created=True)


class TrafficBusy(Busy):
    """The database is busy with other imports for longer than an import waits (503, Retry-After)."""


def _sqlite_move(*, surface: Surface, filename: str, fmt: str, user: AbstractBaseUser | None,
                 reader: HashingReader, rows: int, started: float, flagged: dict[str, str]) -> TrafficImport:
    wait = float(settings.TRAFFIC_IMPORT_WAIT_SECONDS)
    deadline = time.monotonic() + wait
    try:
        with staging.writer_turn(wait=wait):
            while True:
                try:
                    with transaction.atomic():
                        record = _import_record_create(surface=surface, filename=filename, fmt=fmt, user=user)
                        stats = staging.move_staged(import_id=record.pk, flagged=flagged)
                        _import_record_finish(record, reader=reader, rows=rows, stats=stats, started=started)
                    return record
                except OperationalError as exc:
                    # Another writer (a judge run, a label) held SQLite's lock past its busy timeout:
                    # BEGIN IMMEDIATE failed before any work, and the staged rows are still there.
                    if not is_database_busy(exc) or time.monotonic() >= deadline:
                        raise
    except (TimeoutError, OperationalError) as exc:
        if isinstance(exc, OperationalError) and not is_database_busy(exc):
            raise
        raise TrafficBusy(f"Other imports kept the database busy for {wait:g} s; nothing was imported. "
                          "Send the file again in a minute.", retry_after=60) from None


def _import_record_create(*, surface: Surface, filename: str, fmt: str,
                          user: AbstractBaseUser | None) -> TrafficImport:
    return TrafficImport.objects.create(surface=surface, sha256=f"pending-{time.time_ns()}", filename=filename[:255],
                                        format=fmt, created_by=user)


def _import_record_finish(record: TrafficImport, *, reader: HashingReader, rows: int, stats: dict[str, int],
                          started: float) -> None:
    if rows == 0:
        raise TrafficError("The file has no rows.")
    record.sha256 = reader.hexdigest()
    record.rows = rows
    record.stats = stats
    record.seconds = round(time.perf_counter() - started, 3)
    try:
        with transaction.atomic():
            record.save(update_fields=["sha256", "rows", "stats", "seconds"])
    except IntegrityError:
        raise _AlreadyImported() from None


def sample_draw(*, surface: Surface, name: str, strategy: str, params: dict[str, Any], seed: int,
                user: AbstractBaseUser | None = None) -> Sample:
    """Draw and freeze a sample: the snapshot pins the traffic so a redraw gives the same items."""
    _require_analyst(user)
    if strategy not in STRATEGIES:
        raise TrafficError(f"Unknown sampling strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}.")
    if not name.strip():
        raise TrafficError("Give the sample a name.")
    snapshot = traffic_snapshot(surface=surface)
    try:
        item_ids = draw_item_ids(surface=surface, strategy=strategy, params=params, seed=seed, snapshot=snapshot)
    except SamplingError as exc:
        raise TrafficError(str(exc)) from None
    if not item_ids:
        raise TrafficError("That draw selects no items: import traffic first or loosen the parameters.")
    with transaction.atomic():
        sample = Sample.objects.create(
            name=name.strip()[:120], surface=surface, strategy=strategy, params=params, seed=seed,
            snapshot=snapshot, item_count=len(item_ids),
            created_by=user if user is not None and user.is_authenticated else None,
        )
        SampleItem.objects.bulk_create(
            [SampleItem(sample=sample, item_id=item_id, position=pos) for pos, item_id in enumerate(item_ids, 1)],
            batch_size=2000,
        )
    return sample


@dataclass(frozen=True)
class InjectionFlagReport:
    scanned: int
    flagged: int  # documents flagged after the pass
    changed: int  # documents whose flag or reasons the pass changed


def documents_flag_injection(*, batch_size: int = 2000) -> InjectionFlagReport:
    """Flag (or unflag) every document by today's detector (judges.core.injection): for documents
    imported before flags existed, and after the detector's patterns change. Imports flag their new
    documents themselves. Batches by id, each its own short transaction, so it can run beside
    imports and judge runs; only documents whose flag changes are written."""
    from judges.core.injection import detect_document

    scanned = flagged = changed = 0
    after = 0
    while True:
        rows = list(Document.objects.filter(pk__gt=after).order_by("pk")
                    .values_list("pk", "title", "body", "injection_flag", "injection_reasons")[:batch_size])
        if not rows:
            break
        after = rows[-1][0]
        updates = []
        for pk, title, body, was_flagged, was_reasons in rows:
            codes = ",".join(detect_document(title, body))
            flagged += bool(codes)
            if bool(codes) != was_flagged or codes != was_reasons:
                updates.append(Document(pk=pk, injection_flag=bool(codes), injection_reasons=codes))
        if updates:
            with transaction.atomic():
                Document.objects.bulk_update(updates, ["injection_flag", "injection_reasons"], batch_size=500)
        scanned += len(rows)
        changed += len(updates)
    return InjectionFlagReport(scanned=scanned, flagged=flagged, changed=changed)
