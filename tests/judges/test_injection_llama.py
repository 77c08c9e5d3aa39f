"""The injection check through a real OpenAI-compatible server: llama-cpp-python serving SmolLM2-135M
(judges/testing/llama_server.py; skipped where it is not installed). It proves the plumbing: both
prompts of each pair reach the model and come back as labels. Its rose-rate is in BENCHMARKS.md."""

import pytest

from judges.injection_check import injection_check_execute, injection_check_start
from tests.judges.helpers import judge_setup

pytestmark = pytest.mark.django_db


def test_an_injection_check_through_the_real_llama_server(llama, settings, django_capture_on_commit_callbacks):
    settings.SAGE_JUDGE_ENDPOINTS = {"llama": {"base_url": llama.base_url, "api_key": "none",
                                               "json_mode": "json_object_schema", "context_tokens": None}}
    version, sample, analyst = judge_setup(queries=1, depth=2, endpoint="llama", concurrency=1, max_tokens=120,
                                           doc_char_budget=600)
    with django_capture_on_commit_callbacks(execute=False):
        check = injection_check_start(version=version, passages=2, user=analyst)
    check = injection_check_execute(check_id=check.pk)
    assert check.status == "succeeded", check.message
    assert check.total_calls == check.done_calls == 4
    # The labels are poor and an answer may miss the rubric; the pairs that have both are counted.
    assert check.n + check.errors == 2 and check.n >= 1, check.results
    for row in check.results:
        assert row["clean"] in {None, 0, 1, 2, 3} and row["injected"] in {None, 0, 1, 2, 3}
    assert check.flagged_injected == 2 and check.flagged_clean == 0
