"""The first-run configuration: SQLite plus kombu's filesystem broker, with a real worker process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import WorkerProcess

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.worker
def test_a_real_worker_answers_on_the_embedded_default(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL"}}
    env["SAGE_DATA_DIR"] = str(tmp_path)

    def manage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    assert manage("migrate", "--no-input", "-v0").returncode == 0
    worker = WorkerProcess(env, name="embedded")
    try:
        worker.wait_ready()
        result = manage("ping_workers", "--timeout", "30")
        assert result.returncode == 0, result.stdout + result.stderr + worker.log[-3000:]
        assert "answered in" in result.stdout
        assert "transport:   filesystem" in worker.log
    finally:
        worker.stop()
    assert (tmp_path / "sage.sqlite3").exists()


def test_ping_workers_fails_clearly_when_no_worker_runs(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL"}}
    env["SAGE_DATA_DIR"] = str(tmp_path)
    subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v0"], cwd=ROOT, env=env, check=True)
    result = subprocess.run([sys.executable, "manage.py", "ping_workers", "--timeout", "1"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "No worker answered within 1 s" in result.stderr
