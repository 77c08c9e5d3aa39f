"""A small judge run through a real OpenAI-compatible server: llama.cpp serving SmolLM2-135M.

The model's labels are poor; the test proves the plumbing: prompt → json_object+schema request →
grammar-constrained answer → parse → stored judgment (or a recorded invalid-output error).
"""

import pytest

from judges.models import Judgment
from judges.testing.llama_server import LlamaServerUnavailable, running_llama_server
from tests.judges.helpers import judge_setup


@pytest.fixture(scope="module")
def llama():
    try:
        with running_llama_server() as server:
            yield server
    except LlamaServerUnavailable as exc:
        pytest.skip(f"llama.cpp server unavailable: {exc}")


@pytest.mark.django_db
def test_a_small_run_through_the_real_llama_server(llama, settings, run_inline):
    settings.SAGE_JUDGE_ENDPOINTS = {"llama": {"base_url": llama.base_url, "api_key": "none",
                                               "json_mode": "json_object_schema"}}
    version, sample, analyst = judge_setup(queries=1, depth=3, endpoint="llama", concurrency=1, max_tokens=120,
                                           doc_char_budget=600)
    run = run_inline(version, sample, analyst)
    judgments = list(Judgment.objects.filter(run=run))
    assert run.status == "succeeded" and len(judgments) == 3
    for j in judgments:
        assert j.raw_response, "the server answered nothing"
        if j.status == "ok":
            assert j.labels["relevance"] in {0, 1, 2, 3} and j.tokens_in > 0
        else:
            assert j.error_kind in {"invalid_json", "out_of_scale", "missing_field"}
    assert any(j.status == "ok" for j in judgments), [j.error_message for j in judgments]
