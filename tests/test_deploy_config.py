"""docker-compose.yml and .env.example checked against the settings, without Docker.

Docker is not on every machine that runs the suite, so the compose file is read as data: every service
runs the command its role needs, the Celery workers' queues cover the settings' queues, the app services
share one data volume, the health checks exist, and .env.example lists exactly the variables that
sage/settings.py reads (found in its source) plus those docker-compose.yml interpolates. A new setting
without an .env.example line fails here with its name.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings

pytestmark = pytest.mark.embedded  # reads the settings' queues, which both passes configure

ROOT = Path(__file__).resolve().parent.parent
APP_SERVICES = ("web", "worker", "student-worker", "beat")  # built from this repository's Dockerfile
CELERY_WORKERS = ("worker", "student-worker")
ENV_READERS = {"str", "bool", "int", "float", "list", "choice", "database", "is_set"}
# Names built at run time: `prefix + "BASE_URL"` in settings._judge_endpoints, where prefix is
# SAGE_ENDPOINT_<NAME>_ for each name in SAGE_ENDPOINTS; .env.example documents the default name, local.
DYNAMIC_PREFIXES = {"prefix": "SAGE_ENDPOINT_LOCAL_"}
EXAMPLE_LINE = re.compile(r"^(?:# )?([A-Z][A-Z0-9_]*)=(.*)$")


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"docker-compose.yml has no service {name!r}"
    return services[name]


def argv(svc: dict[str, Any]) -> list[str]:
    """A service's command as argv; `sh -c "a && b"` is flattened so the parts can be searched."""
    command = svc.get("command")
    if command is None:
        return []
    words = shlex.split(command) if isinstance(command, str) else [str(w) for w in command]
    if words[:2] == ["sh", "-c"]:
        words = shlex.split(" ".join(words[2:]))
    return words


def option(words: list[str], flag: str) -> str | None:
    """The value of `flag value` or `flag=value` in argv."""
    for i, word in enumerate(words):
        if word == flag and i + 1 < len(words):
            return words[i + 1]
        if word.startswith(flag + "="):
            return word[len(flag) + 1:]
    return None


def healthcheck_text(svc: dict[str, Any]) -> str:
    test = svc.get("healthcheck", {}).get("test", [])
    return test if isinstance(test, str) else " ".join(test)


def env_names_read_by_settings() -> dict[str, int]:
    """Every environment variable sage/settings.py and sage/env.py read, with the line reading it.

    Walks the source rather than importing it, so a variable read only on one branch (SAGE_HTTPS's)
    is found too. A read whose name is neither a literal nor a known prefix fails: add it above."""
    names: dict[str, int] = {}
    for path in (ROOT / "sage" / "settings.py", ROOT / "sage" / "env.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            arg = None
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = node.func.value
                if isinstance(owner, ast.Name) and owner.id == "env" and node.func.attr in ENV_READERS:
                    arg = node.args[0]
                elif ast.unparse(node.func) in {"os.environ.get", "os.getenv", "os.environ.setdefault"}:
                    arg = node.args[0]
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
                arg = node.slice
            if arg is None:
                continue
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names[arg.value] = node.lineno
            elif (isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Add) and isinstance(arg.left, ast.Name)
                  and arg.left.id in DYNAMIC_PREFIXES and isinstance(arg.right, ast.Constant)):
                names[DYNAMIC_PREFIXES[arg.left.id] + arg.right.value] = node.lineno
            else:
                pytest.fail(f"{path.name}:{node.lineno} reads an environment variable by a name this test "
                            f"cannot resolve ({ast.unparse(arg)}): teach test_deploy_config.py its names")
    return names


def env_example() -> dict[str, str]:
    """.env.example's variables (set or commented out with their default) and their example values."""
    found: dict[str, str] = {}
    for number, line in enumerate((ROOT / ".env.example").read_text().splitlines(), 1):
        match = EXAMPLE_LINE.match(line)
        if match:
            assert match[1] not in found, f".env.example:{number} lists {match[1]} twice"
            found[match[1]] = match[2]
        else:
            assert not line or line.startswith("#"), f".env.example:{number} is neither NAME=value nor a comment"
    return found


def interpolated_in_compose() -> set[str]:
    """${NAME...} that compose substitutes from .env or the shell; $${NAME} is the container's own."""
    return set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", (ROOT / "docker-compose.yml").read_text()))


# --- services and their commands --------------------------------------------------------------------


def test_postgres_and_redis_run_their_images_with_persistent_data_and_health_checks():
    db, redis = service("db"), service("redis")
    assert db["image"].startswith("postgres:") and redis["image"].startswith("redis:")
    assert "pg_isready" in healthcheck_text(db)
    assert "redis-cli ping" in healthcheck_text(redis)
    # Queued tasks survive a Redis restart (README, "Scaling out").
    assert argv(redis)[:3] == ["redis-server", "--appendonly", "yes"]
    assert "pgdata:/var/lib/postgresql/data" in db["volumes"]
    assert "redisdata:/data" in redis["volumes"]


def test_web_migrates_then_serves_gunicorn_with_whitenoise_and_checks_readyz():
    web = service("web")
    words = argv(web)
    assert words[:4] == ["python", "manage.py", "migrate", "--no-input"]
    gunicorn = words[words.index("gunicorn"):]
    assert gunicorn[1] == settings.WSGI_APPLICATION.rsplit(".", 1)[0]
    assert "whitenoise.middleware.WhiteNoiseMiddleware" in settings.MIDDLEWARE
    environment = web["environment"]
    # Whitenoise serves what the image collected at build time, not the finders.
    assert environment["WHITENOISE_USE_FINDERS"] == "false"
    collected = re.search(r"STATIC_ROOT=(\S+)\s+\\?\s*python manage.py collectstatic",
                          (ROOT / "Dockerfile").read_text())
    assert collected and collected[1] == environment["STATIC_ROOT"], "Dockerfile collects static files elsewhere"
    check = healthcheck_text(web)
    assert "/readyz" in check
    # The check's Host header must be allowed, by compose's default and by the example .env.
    host = re.search(r"'Host': '([^']+)'", check)[1]
    assert host in env_example()["ALLOWED_HOSTS"].split(",")
    assert host in re.search(r"\$\{ALLOWED_HOSTS:-([^}]*)\}", str(environment["ALLOWED_HOSTS"]))[1].split(",")


def test_each_celery_worker_names_its_queues_and_together_they_cover_the_settings():
    queues_of = {}
    for name in CELERY_WORKERS:
        words = argv(service(name))
        assert words[:4] == ["celery", "-A", "sage", "worker"], f"{name}: {words}"
        queues = option(words, "-Q")
        assert queues, f"{name} takes every queue: give it -Q"
        queues_of[name] = set(queues.split(","))
        # A worker started with --beat would repeat the sweeps once per replica (`--scale worker=N`).
        assert "--beat" not in words and "-B" not in words, f"{name} runs beat; the beat service does"
    assert queues_of["worker"] == {settings.CELERY_TASK_DEFAULT_QUEUE}
    assert queues_of["student-worker"] == {settings.SAGE_STUDENT_QUEUE, settings.SAGE_DISTILL_QUEUE}, queues_of
    consumed = set().union(*queues_of.values())
    declared = {queue.name for queue in settings.CELERY_TASK_QUEUES}
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    assert consumed == declared, f"no worker consumes {declared - consumed}; {consumed - declared} is undeclared"
    assert routed <= consumed


def test_the_student_worker_takes_one_task_at_a_time_and_keeps_its_gpu_lines():
    words = argv(service("student-worker"))
    assert option(words, "--concurrency") == "1"
    text = (ROOT / "docker-compose.yml").read_text()
    block = text[text.index("\n  student-worker:"):text.index("\n  beat:")]
    assert "capabilities: [gpu]" in block and "driver: nvidia" in block


def test_worker_health_checks_ping_the_node_name_the_worker_takes():
    for name in CELERY_WORKERS:
        svc = service(name)
        node = option(argv(svc), "-n") or "celery@%h"
        check = svc["healthcheck"]["test"]
        assert check[:5] == ["CMD", "celery", "-A", "sage", "inspect"], name
        assert option(check, "-d") == node.replace("%h", "$${HOSTNAME}"), name


def test_exactly_one_beat_runs_the_settings_schedule():
    assert settings.CELERY_BEAT_SCHEDULE, "nothing is scheduled: drop the beat service"
    assert argv(service("beat"))[:4] == ["celery", "-A", "sage", "beat"]
    beats = [name for name, svc in compose()["services"].items()
             if "beat" in argv(svc)[3:4] or "--beat" in argv(svc) or "-B" in argv(svc)]
    assert beats == ["beat"]
    assert "deploy" not in service("beat"), "beat must not be replicated"


def test_the_model_server_is_optional_and_nothing_waits_for_it():
    llm = service("llm")
    assert llm["profiles"] == ["llm"]
    assert "llama.cpp:server" in llm["image"]
    words = argv(llm)
    assert option(words, "--host") == "0.0.0.0" and option(words, "--port") == "8080"
    assert "/health" in healthcheck_text(llm)
    for name, svc in compose()["services"].items():
        assert "llm" not in svc.get("depends_on", {}), f"{name} would need the optional llm profile"


# --- volumes and variables --------------------------------------------------------------------------


def test_web_and_every_worker_share_the_data_volume_at_sage_data_dir():
    declared = set(compose()["volumes"])
    assert {"pgdata", "redisdata", "sagedata"} <= declared
    for name in APP_SERVICES:
        svc = service(name)
        data_dir = svc["environment"]["SAGE_DATA_DIR"]
        assert f"sagedata:{data_dir}" in svc["volumes"], f"{name} does not mount sagedata at {data_dir}"
        assert svc["build"] == "."
    for name, svc in compose()["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert source.startswith(("$", ".", "/")) or source in declared, f"{name}: undeclared volume {source}"


def test_app_services_read_env_file_and_point_at_the_compose_database_and_broker():
    services = compose()["services"]
    read = env_names_read_by_settings()
    for name in APP_SERVICES:
        svc = services[name]
        assert svc["env_file"] == ".env", name
        environment = svc["environment"]
        assert set(environment) <= set(read), f"{name} sets variables no setting reads: {set(environment) - set(read)}"
        database = re.match(r"postgres://[^@]+@([^:/]+):5432/", environment["DATABASE_URL"])
        broker = re.match(r"redis://([^:/]+):6379/\d+$", environment["CELERY_BROKER_URL"])
        assert database and database[1] in services, f"{name}: DATABASE_URL names no service"
        assert broker and broker[1] in services, f"{name}: CELERY_BROKER_URL names no service"
        assert ":?" in environment["SECRET_KEY"], f"{name} must refuse to start without SECRET_KEY"
        assert environment["DEBUG"] == "false"
        depends = svc.get("depends_on", {})
        assert {"db", "redis"} <= set(depends), name
    for name in ("worker", "student-worker", "beat"):
        assert services[name]["depends_on"]["web"] == {"condition": "service_healthy"}, "migrations first"


def test_env_example_lists_exactly_what_the_settings_and_compose_read():
    read = env_names_read_by_settings()
    example = set(env_example())
    expected = set(read) | interpolated_in_compose()
    missing, stale = sorted(expected - example), sorted(example - expected)
    assert not missing, f".env.example lacks {missing} (read at sage/settings.py lines {[read.get(n) for n in missing]})"
    assert not stale, f".env.example lists {stale}, which neither the settings nor docker-compose.yml read"


def test_env_example_holds_no_real_secret():
    example = env_example()
    assert "change-me" in example["SECRET_KEY"] and "change-me" in example["POSTGRES_PASSWORD"]
    for name, value in example.items():
        if name.endswith(("_KEY", "_PASSWORD")):
            assert value in {"", "not-needed"} or "change-me" in value, f"{name} looks like a real secret"


def test_settings_accept_every_example_value(tmp_path):
    """Every value in .env.example, commented or not, passes the settings' readers (a typo stops start-up)."""
    values = env_example()
    # Compose's container paths stand for folders of this test; nothing connects to the database or broker.
    values |= {"SAGE_DATA_DIR": str(tmp_path), "STATIC_ROOT": str(tmp_path / "static"),
               "MEDIA_ROOT": str(tmp_path / "media")}
    environment = {key: value for key, value in os.environ.items()
                   if key in {"PATH", "HOME", "LANG", "SYSTEMROOT", "TMPDIR"}} | values
    probe = ("import django; django.setup(); from django.conf import settings as s; "
             "print(s.DEBUG, s.HTTPS, s.CELERY_BROKER_URL, sorted(s.SAGE_JUDGE_ENDPOINTS))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env=environment | {"DJANGO_SETTINGS_MODULE": "sage.settings"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["False", "False", "redis://redis:6379/0", "['local']"]
