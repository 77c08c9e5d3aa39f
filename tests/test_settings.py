"""Settings as a deployment sees them: each case runs a fresh interpreter with a chosen environment."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROBE = (
    "import json, django; from django.conf import settings; django.setup();"
    "db = settings.DATABASES['default'];"
    "print(json.dumps({'engine': db['ENGINE'], 'options': db.get('OPTIONS', {}), 'broker': settings.CELERY_BROKER_URL,"
    " 'eager': settings.CELERY_TASK_ALWAYS_EAGER, 'debug': settings.DEBUG}))"
)


def run_python(code_or_args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG"}}
    return subprocess.run([sys.executable, *code_or_args], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=120)


def test_the_embedded_default_is_sqlite_wal_and_a_filesystem_broker(tmp_path):
    result = run_python(["-c", PROBE], {"SAGE_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "sage.settings"})
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert config["engine"] == "django.db.backends.sqlite3"
    assert config["options"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in config["options"]["init_command"]
    assert config["broker"] == "filesystem://"
    assert config["eager"] is False
    assert config["debug"] is False
    assert (tmp_path / "broker" / "queue").is_dir()
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_bad_environment_stops_start_up_with_the_variable_named(tmp_path):
    result = run_python(["-c", PROBE], {"SAGE_DATA_DIR": str(tmp_path), "DEBUG": "perhaps",
                                        "DJANGO_SETTINGS_MODULE": "sage.settings"})
    assert result.returncode != 0
    assert "DEBUG='perhaps' is not a boolean" in result.stderr


def test_an_unknown_broker_is_refused(tmp_path):
    result = run_python(["-c", PROBE], {"SAGE_DATA_DIR": str(tmp_path), "CELERY_BROKER_URL": "amqp://x",
                                        "DJANGO_SETTINGS_MODULE": "sage.settings"})
    assert result.returncode != 0
    assert "CELERY_BROKER_URL='amqp://x'" in result.stderr


def production_env(tmp_path) -> dict[str, str]:
    return {
        "SAGE_DATA_DIR": str(tmp_path),
        "SECRET_KEY": "x" * 20 + "production-secret-key-with-enough-entropy-0123456789",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "sage.example.com",
        "SAGE_HTTPS": "true",
        "DATABASE_URL": "postgres://sage:pw@db:5432/sage",
        "CELERY_BROKER_URL": "redis://redis:6379/0",
    }


def test_check_deploy_is_clean_under_production_settings(tmp_path):
    result = run_python(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues (0 silenced)" in result.stdout


def test_a_short_secret_key_is_refused(tmp_path):
    env = production_env(tmp_path) | {"SECRET_KEY": "short"}
    result = run_python(["manage.py", "check"], env)
    assert result.returncode != 0
    assert "SECRET_KEY must be at least 50 characters" in result.stderr


def test_an_unknown_endpoint_client_is_refused_naming_the_variable(tmp_path):
    result = run_python(["-c", PROBE], {"SAGE_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "sage.settings",
                                        "SAGE_ENDPOINT_LOCAL_CLIENT": "curl"})
    assert result.returncode != 0
    assert "SAGE_ENDPOINT_LOCAL_CLIENT" in result.stderr and "curl" in result.stderr


def test_every_variable_docker_compose_sets_is_read_by_the_settings():
    compose = (ROOT / "docker-compose.yml").read_text()
    example = (ROOT / ".env.example").read_text()
    settings_source = (ROOT / "sage" / "settings.py").read_text()
    set_in_compose = set(re.findall(r"^\s+([A-Z][A-Z0-9_]+):", compose, re.M))
    set_in_example = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", example, re.M))
    # Variables consumed by the images themselves rather than by SAGE's settings.
    image_variables = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}
    read_by_settings = set(re.findall(r'env\.\w+\("([A-Z][A-Z0-9_]+)"', settings_source))
    assert set_in_compose, "no environment variables found in docker-compose.yml"
    assert (set_in_compose | set_in_example) - image_variables <= read_by_settings


@pytest.mark.django_db
def test_the_suite_runs_on_the_database_the_environment_names():
    from django.db import connection

    expected = "postgresql" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "sqlite"
    assert connection.vendor == expected
