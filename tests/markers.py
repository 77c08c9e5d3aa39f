"""Skips for tests of one database's code path.

`./run test` runs the suite on PostgreSQL, then the tests marked `embedded` on the embedded default
(SQLite + the filesystem broker). A test of code that only one of them takes says so here, with
the reason shown in the skip.
"""

import pytest
from django.conf import settings


def _vendor() -> str:
    return "sqlite" if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3") else "postgresql"


postgresql_only = pytest.mark.skipif(
    _vendor() != "postgresql", reason="PostgreSQL's code path (e.g. traffic.pgimport's COPY batches); "
                                      "the embedded default takes another")
sqlite_only = pytest.mark.skipif(
    _vendor() != "sqlite", reason="the embedded default's code path (SQLite); ./run test's embedded pass runs it")
