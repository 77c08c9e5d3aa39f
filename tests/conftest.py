"""Shared fixtures: real services only — a Celery worker process, headless Chromium, users by role."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in the test thread; Django's ORM calls from that thread
# are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ROOT = Path(__file__).resolve().parent.parent


# `./run test` runs the suite on PostgreSQL + Redis, then the tests marked `embedded` again on the
# embedded default (SQLite + filesystem broker, what `./run demo` runs): those whose code takes a
# database- or broker-specific path. A module marks itself (`pytestmark`), or is listed here.
EMBEDDED_MODULES = (
    "tests/review/test_assignment.py",  # select_for_update(skip_locked) on PostgreSQL only
    "tests/review/test_labels.py",  # label import: resolving items by hash and by (query, doc_id)
    "tests/calibration/test_selectors_scale.py",  # agreement: SQL fast path vs the portable one
)


def pytest_configure(config):
    # Registered here rather than in pyproject.toml, whose change would make ./run reinstall the package.
    config.addinivalue_line("markers", "embedded: touches a database- or broker-specific path; ./run test "
                                       "runs these again on the embedded default (SQLite + filesystem broker)")
    missing = [m for m in EMBEDDED_MODULES if not (ROOT / m).exists()]
    if missing:  # a renamed module would silently drop out of the embedded pass
        raise pytest.UsageError(f"tests/conftest.py EMBEDDED_MODULES names missing modules: {', '.join(missing)}")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.split("::")[0] in EMBEDDED_MODULES:
            item.add_marker(pytest.mark.embedded)


ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def database_url_for(settings_dict: dict) -> str:
    """The DATABASE_URL that points a subprocess at the database this test session uses."""
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict.get("USER") or ""
    password = settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    return f"postgres://{auth}{settings_dict['HOST']}:{settings_dict['PORT']}/{settings_dict['NAME']}"


class WorkerProcess:
    """A real `celery worker` subprocess whose log is collected for assertions and failures."""

    def __init__(self, env: dict[str, str], name: str, extra_args: list[str] | None = None) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "sage", "worker", "--loglevel=INFO", "--concurrency=2",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"{name}@%h",
             *(extra_args or [])],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Celery worker did not start:\n{self.log[-4000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(autouse=True)
def _clear_django_cache() -> Iterator[None]:
    """Each test starts with an empty cache: cached reads (the human ceiling) are keyed by ids, and a
    rolled-back test's ids come back in the next test on SQLite."""
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture(scope="module")
def llama():
    """The packaged small model behind llama-cpp-python's OpenAI-compatible server, one per module
    (it takes seconds to start); skips where it cannot be built or started."""
    from judges.testing.llama_server import LlamaServerUnavailable, running_llama_server

    try:
        with running_llama_server() as server:
            yield server
    except LlamaServerUnavailable as exc:
        pytest.skip(f"llama.cpp server unavailable: {exc}")


@pytest.fixture(scope="session")
def fault_server():
    """A fault-free OpenAI-compatible test server (50 ms latency) shared by the session, also known
    to the worker process as the judge endpoint named 'fault'."""
    from judges.testing.fault_server import running_fault_server

    with running_fault_server(latency_ms=50) as server:
        yield server


@pytest.fixture
def fault_endpoint(settings, fault_server):
    """Register the session fault server as endpoint 'fault' in this process's settings."""
    settings.SAGE_JUDGE_ENDPOINTS = {**settings.SAGE_JUDGE_ENDPOINTS, "fault": {
        "base_url": fault_server.base_url, "api_key": "test", "json_mode": "json_schema"}}
    return fault_server


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, fault_server) -> Iterator[WorkerProcess]:
    """A worker consuming from the session's Redis broker and writing to the test database."""
    from django.conf import settings
    from django.db import connections

    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.skip("needs CELERY_BROKER_URL=redis://… (./run test starts a throwaway Redis)")
    env = dict(os.environ)
    env["DATABASE_URL"] = database_url_for(connections["default"].settings_dict)
    env["SAGE_ENDPOINTS"] = "local,fault"
    env["SAGE_ENDPOINT_FAULT_BASE_URL"] = fault_server.base_url
    env["SAGE_ENDPOINT_FAULT_API_KEY"] = "test"
    env["SAGE_ENDPOINT_FAULT_JSON_MODE"] = "json_schema"
    worker = WorkerProcess(env, name="pytest")
    worker.wait_ready()
    yield worker
    worker.stop()


def wait_for(predicate, timeout: float = 30, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {message}")


@pytest.fixture(scope="module")
def browser():
    # Module scope, not session: Playwright's sync API keeps an event loop running on the main thread
    # while it is open, and tests that call asyncio.run() later in the session must not see it.
    executable = os.environ.get("SAGE_BROWSER", "/usr/bin/chromium")
    if not Path(executable).exists():
        pytest.skip(f"headless Chromium not found at {executable} (./run test installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def browser_login(page, live_server, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


PASSWORD = "correct-horse-battery"


@pytest.fixture
def make_user(db):
    from tests.factories import UserFactory

    def make(*roles: str, **kwargs):
        return UserFactory(roles=roles, **kwargs)

    return make


@pytest.fixture
def reviewer(make_user):
    return make_user("reviewer", username="rita")


@pytest.fixture
def analyst(make_user):
    return make_user("analyst", username="andy")


@pytest.fixture
def admin_user(make_user):
    return make_user("admin", username="ada")


@pytest.fixture
def inline_chunks(monkeypatch):
    """Run judge-run chunk tasks in this process (the worker tests use a real worker); the returned
    list records each chunk of item ids as it was queued."""
    from judges.services import judge_run_chunk

    queued: list[list[int]] = []

    def delay(run_id, item_ids):
        queued.append(item_ids)
        judge_run_chunk(run_id=run_id, item_ids=item_ids)

    monkeypatch.setattr("judges.tasks.judge_run_chunk_task.delay", delay)
    return queued


@pytest.fixture
def finish_run(inline_chunks):
    """Execute a queued judge run in this process and return it finished."""
    from judges.services import judge_run_execute

    def finish(run):
        judge_run_execute(run_id=run.pk)
        run.refresh_from_db()
        return run

    return finish


@pytest.fixture
def run_inline(finish_run, django_capture_on_commit_callbacks):
    """start(version, sample, user, **kw): start a judge run through the service and finish it in-process."""
    from judges.services import judge_run_start

    def start(version, sample, user, **kw):
        with django_capture_on_commit_callbacks(execute=False):
            run = judge_run_start(version=version, sample=sample, user=user, **kw)
        return finish_run(run)

    return start
