"""The gate end to end on real parts: the API through Redis and a real Celery worker process (the
comparison's refresh task and the gate's follow task run there), and `manage.py sage_gate` as a real
process whose exit code and JUnit file CI would see."""

import os
import subprocess
import sys

import pytest
from django.db import connections
from junitparser import Failure, JUnitXml

from gates.models import GateRun, Scope
from gates.services import token_create
from tests.conftest import ROOT, database_url_for, wait_for
from tests.gates.helpers import gate_world
from tests.markers import postgresql_only


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_gate_run_started_by_the_api_is_finished_by_a_real_worker(celery_worker_process, client, settings):
    gate, analyst = gate_world(slug="worker-gate")
    _token, secret = token_create(owner=analyst, name="ci", scopes=[Scope.GATE_RUN], user=analyst)
    auth = {"Authorization": f"Bearer {secret}"}
    response = client.post(f"/api/gates/{gate.name}/runs", data={"candidate": "worse"},
                           content_type="application/json", headers=auth)
    assert response.status_code == 202, response.content
    url = response.json()["url"]
    # Nothing in this process refreshes the run: only the worker's tasks can finish it.
    finished = wait_for(lambda: GateRun.objects.exclude(status="running").filter(pk=response.json()["run"]).first(),
                        timeout=90, message="the worker to finish the gate run")
    assert finished.status == "regression", finished.message + celery_worker_process.log[-3000:]
    assert "gate_run_follow_task" in celery_worker_process.log
    report = client.get(url, headers=auth).json()
    assert report["exit_code"] == 1 and report["metrics"]["ndcg@5"]["verdict"] == "regression"


def _sage_gate(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DATABASE_URL=database_url_for(connections["default"].settings_dict),
               SAGE_BASE_URL="https://sage.example.com")
    return subprocess.run([sys.executable, "manage.py", "sage_gate", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180)


@postgresql_only  # the process needs a database file or server it can reach; SQLite's test database is in memory
@pytest.mark.django_db(transaction=True)
def test_the_command_exits_0_on_a_pass_and_1_on_a_regression_as_a_process(tmp_path):
    gate, _analyst = gate_world(slug="process-gate")
    passed = _sage_gate(gate.name, "--candidate", "better", "--poll", "0.2")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert f"Gate {gate.name}: passed" in passed.stdout

    junit = tmp_path / "gate.xml"
    failed = _sage_gate(gate.name, "--candidate", "worse", "--junit", str(junit), "--poll", "0.2")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "item/s" in failed.stderr  # the progress bar
    cases = {case.name: case for suite in JUnitXml.fromfile(str(junit)) for case in suite}
    failure = cases["ndcg@5"].result[0]
    assert isinstance(failure, Failure) and "https://sage.example.com/comparisons/" in failure.message
