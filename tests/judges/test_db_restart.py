"""A database restart between tasks costs no task: a worker's persistent connection (CONN_MAX_AGE)
broken by it is noticed and replaced before the next task's first query (CONN_HEALTH_CHECKS)."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)


def _drop_our_connection_server_side() -> None:
    """What `pg_ctl restart -m fast` does to every open connection (bench/faults.py restarts it for real)."""
    settings = connection.settings_dict
    pid = connection.connection.info.backend_pid
    with psycopg.connect(dbname=settings["NAME"], user=settings["USER"], host=settings["HOST"],
                         port=settings["PORT"], password=settings["PASSWORD"] or None, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_the_first_task_after_a_database_restart_reconnects_instead_of_failing():
    from judges.tasks import judge_runs_sweep_task

    if connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL connection kept between tasks (SQLite connections are not kept)")
    assert connection.settings_dict["CONN_MAX_AGE"] > 0  # kept between tasks: the case this is about
    connection.ensure_connection()
    _drop_our_connection_server_side()
    # What Celery's Django fixup does before and after every task (eager tasks skip it, so by hand).
    connection.close_if_unusable_or_obsolete()
    result = judge_runs_sweep_task.apply()
    assert result.successful(), result.traceback
