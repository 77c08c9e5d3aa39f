"""The progress bar that sage_export and sage_import share (a module Django does not take for a command)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from django.core.management.base import CommandError
from tqdm import tqdm

from sage.backup import BackupError, FilesNotPlaced

T = TypeVar("T")


def with_progress(call: Callable[..., T], *, path: Path, verbosity: int, failure: str = "", **kwargs: Any
                  ) -> tuple[T, float]:
    """Run `call(path=path, progress=..., on_total=..., **kwargs)` under a tqdm bar of records; returns its report and
    the seconds it took. A BackupError or OSError becomes a CommandError, prefixed with `failure` (except
    FilesNotPlaced, which happens after the records were committed)."""
    bar = tqdm(total=0, unit="rec", unit_scale=True, desc=path.name, disable=verbosity < 1)

    def on_total(total: int) -> None:
        bar.total = total
        bar.refresh()

    started = time.perf_counter()
    try:
        report = call(path=path, progress=bar.update, on_total=on_total, **kwargs)
    except FilesNotPlaced as exc:
        raise CommandError(str(exc)) from None
    except (BackupError, OSError) as exc:
        raise CommandError(f"{failure}{exc}") from None
    finally:
        bar.close()
    return report, time.perf_counter() - started
