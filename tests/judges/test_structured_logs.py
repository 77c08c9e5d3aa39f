"""Structured logs: SAGE_LOG_FORMAT picks the format, and a task's log lines carry the ids of its work."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys

import pytest

from judges.services import judge_run_execute
from judges.testing.fault_server import running_fault_server
from sage.logging import ContextFilter, JsonFormatter, PlainFormatter, log_context
from tests.conftest import ROOT
from tests.judges.helpers import judge_setup


@pytest.fixture
def captured(caplog):
    """Every record of the test through a console-like handler: the JSON formatter and the ids filter."""
    caplog.set_level(logging.INFO)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    logging.getLogger().addHandler(handler)
    yield stream
    logging.getLogger().removeHandler(handler)


@pytest.mark.django_db
def test_a_chunks_log_lines_are_json_carrying_its_run_task_chunk_and_item_ids(settings, captured, monkeypatch,
                                                                               django_capture_on_commit_callbacks):
    from judges.services import judge_run_start
    from judges.tasks import judge_run_chunk_task

    chunks: list[list[int]] = []
    monkeypatch.setattr("judges.tasks.judge_run_chunk_task.delay", lambda run_id, ids: chunks.append(ids))
    # Every answer malformed, the repair turn too: each item ends in a recorded error, logged per item.
    with running_fault_server(rate_malformed=1.0) as server:
        settings.SAGE_JUDGE_ENDPOINTS = {**settings.SAGE_JUDGE_ENDPOINTS, "fault": {
            "base_url": server.base_url, "api_key": "test", "json_mode": "json_schema"}}
        version, sample, analyst = judge_setup(queries=1, depth=3)
        with django_capture_on_commit_callbacks(execute=False):
            run = judge_run_start(version=version, sample=sample, user=analyst)
        judge_run_execute(run_id=run.pk)
        result = judge_run_chunk_task.apply(args=(run.pk, chunks[0]))  # through Celery's tracer: its signals fire
    assert result.successful(), result.traceback
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]  # every line parses
    ours = [r for r in lines if r["logger"].startswith("judges.")]
    assert ours, lines
    for record in ours:
        assert record["run_id"] == run.pk and record["run_kind"] == "judge"
        assert record["task_id"] == result.id and record["chunk"] == f"{chunks[0][0]}-{chunks[0][-1]}"
    errors = [r for r in ours if r["message"].startswith("item ended in a recorded error")]
    assert sorted(r["item_id"] for r in errors) == sorted(chunks[0])
    assert {r["level"] for r in errors} == {"INFO"}
    # Outside the task nothing is bound any more.
    logging.getLogger("judges.services").info("after the task")
    after = json.loads(captured.getvalue().splitlines()[-1])
    assert after["message"] == "after the task" and "run_id" not in after and "task_id" not in after


def test_the_plain_format_appends_the_ids_before_a_traceback():
    record = logging.LogRecord("judges.services", logging.ERROR, __file__, 1, "chunk failed", None, None)
    with log_context(run_kind="judge", run_id=7, chunk="3-9"):
        ContextFilter().filter(record)
    record.item_id = 4
    assert PlainFormatter().format(record).endswith("judges.services: chunk failed [run_kind=judge run_id=7 chunk=3-9 "
                                                    "item_id=4]")
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
        record.exc_text = None
    first, _, rest = PlainFormatter().format(record).partition("\n")
    assert first.endswith("[run_kind=judge run_id=7 chunk=3-9 item_id=4]") and rest.startswith("Traceback")


@pytest.mark.parametrize("fmt", ["json", "plain"])
def test_sage_log_format_selects_the_console_format(fmt, tmp_path):
    """A fresh process configured from the environment, as a worker is."""
    script = ("import django, logging; django.setup()\n"
              "from sage.logging import log_context\n"
              "with log_context(run_id=11, chunk='1-2'):\n"
              "    logging.getLogger('judges.tasks').warning('hello')\n")
    env = {**os.environ, "SAGE_LOG_FORMAT": fmt, "SAGE_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "sage.settings"}
    env.pop("DATABASE_URL", None)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    line = [x for x in out.stderr.splitlines() if "hello" in x][-1]
    if fmt == "json":
        record = json.loads(line)
        assert record["message"] == "hello" and record["run_id"] == 11 and record["chunk"] == "1-2"
        assert record["level"] == "WARNING" and record["logger"] == "judges.tasks"
    else:
        assert line.endswith("WARNING judges.tasks: hello [run_id=11 chunk=1-2]")
