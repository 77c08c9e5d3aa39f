"""Fixtures for the DB-free judges core: a rubric, requests, and a throwaway Redis server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from judges.core.prompt import build_request
from judges.core.types import JudgeConfig, JudgeItem, JudgeRequest
from policy.rubric import Rubric, parse_rubric, trec_relevance_dimension

POLICY = "Judge whether the result answers the query. A result that only mentions the query terms is related, not relevant."


def make_rubric() -> Rubric:
    return parse_rubric({"dimensions": [
        trec_relevance_dimension(),
        {"key": "freshness", "name": "Freshness", "description": "Is the information current?",
         "levels": [{"value": 0, "label": "Stale", "definition": "Outdated."},
                    {"value": 1, "label": "Dated", "definition": "Somewhat old."},
                    {"value": 2, "label": "Current", "definition": "Up to date."}]},
    ]})


def make_config(**overrides) -> JudgeConfig:
    values = dict(model="fault-model", temperature=0.0, max_tokens=200, timeout_s=5, max_retries=3)
    values.update(overrides)
    return JudgeConfig(**values)


def make_item(item_id: int = 1, **overrides) -> JudgeItem:
    values = dict(item_id=item_id, query=f"how tall is mount everest {item_id}", title="Mount Everest",
                  body="Mount Everest is 8,849 metres tall.", url=f"https://example.com/{item_id}")
    values.update(overrides)
    return JudgeItem(**values)


def make_requests(n: int, config: JudgeConfig | None = None) -> list[JudgeRequest]:
    config = config or make_config()
    rubric = make_rubric()
    return [build_request(POLICY, rubric, [], make_item(i), config) for i in range(1, n + 1)]


@pytest.fixture
def rubric() -> Rubric:
    return make_rubric()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """A real redis-server on a free loopback port, removed after the session."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("redis-server is not on PATH (apt-get install redis-server) — Redis limiter not tested")
    directory: Path = tmp_path_factory.mktemp("redis")
    port = _free_port()
    pidfile = directory / "redis.pid"
    subprocess.run([executable, "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "yes",
                    "--save", "", "--appendonly", "no", "--dir", str(directory), "--pidfile", str(pidfile)],
                   check=True, capture_output=True)
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    client.close()
    yield f"redis://127.0.0.1:{port}/0"
    # Stop exactly the server started here, by the pid it wrote.
    pid = int(pidfile.read_text())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
