"""Log formats (SAGE_LOG_FORMAT=plain|json) and the ids every log line of a task carries.

One context variable holds the ids of what the current code works on: Celery's task_prerun binds
task_id and task (sage/celery.py), a task binds run_id, run_kind and chunk at its start
(`log_context`), and `ContextFilter`, on the console handler, copies them onto every record that
passes, whichever logger made it. A record's own `extra=` (e.g. item_id on an item's error) wins.

The JSON format is python-json-logger's (one object a line; a record's extra fields become keys),
for log shippers; the plain one appends the ids as key=value so a person can grep them too.
Code on other threads (the judge engine's event loop) does not see the context: only the caller's.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

# The fields the context may carry, in the order the plain format shows them.
FIELDS = ("run_kind", "run_id", "chunk", "item_id", "task", "task_id")

_ids: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("sage_log_ids", default={})


def bind(**ids: Any) -> contextvars.Token:
    """Add `ids` (None values skipped) to the current context; returns the token `unbind` takes."""
    return _ids.set({**_ids.get(), **{k: v for k, v in ids.items() if v is not None}})


def unbind(token: contextvars.Token) -> None:
    try:
        _ids.reset(token)
    except ValueError:  # bound in another context (a signal on another thread): start clean
        _ids.set({})


@contextmanager
def log_context(**ids: Any) -> Iterator[None]:
    token = bind(**ids)
    try:
        yield
    finally:
        unbind(token)


def current_ids() -> dict[str, Any]:
    return dict(_ids.get())


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _ids.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class PlainFormatter(logging.Formatter):
    def __init__(self, fmt: str | None = None, datefmt: str | None = None, **kwargs: Any) -> None:
        super().__init__(fmt or "%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = " ".join(f"{k}={getattr(record, k)}" for k in FIELDS if getattr(record, k, None) is not None)
        if not ids:
            return text
        first, newline, rest = text.partition("\n")  # after the message, before a traceback
        return f"{first} [{ids}]{newline}{rest}"


class JsonFormatter(_JsonFormatter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        super().__init__(*(args or ("%(asctime)s %(levelname)s %(name)s %(message)s",)), **kwargs)
