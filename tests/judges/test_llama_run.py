"""Judge runs through a real OpenAI-compatible server: llama-cpp-python serving SmolLM2-135M (n_ctx 2048).

The model's labels are poor; the tests prove the plumbing: prompt → json_object+schema request →
grammar-constrained answer → parse → stored judgment (or a recorded invalid-output error); and what
the real server does with a prompt longer than its context.
"""

import pytest

from judges.core.openai_backend import probe_context_tokens
from judges.models import Judgment
from judges.services import JudgeError, judge_run_prompt_budget, judge_run_start
from tests.judges.helpers import judge_setup, lengthen


def llama_endpoint(settings, llama, context_tokens=None) -> None:
    settings.SAGE_JUDGE_ENDPOINTS = {"llama": {"base_url": llama.base_url, "api_key": "none",
                                               "json_mode": "json_object_schema", "context_tokens": context_tokens}}


@pytest.mark.django_db
def test_a_small_run_through_the_real_llama_server(llama, settings, run_inline):
    llama_endpoint(settings, llama)
    version, sample, analyst = judge_setup(queries=1, depth=3, endpoint="llama", concurrency=1, max_tokens=120,
                                           doc_char_budget=600)
    run = run_inline(version, sample, analyst)
    judgments = list(Judgment.objects.filter(run=run))
    assert len(judgments) == 3
    # The labels are poor and an answer may miss the rubric; most must not, or the run says so.
    assert run.status == ("succeeded" if run.error_items * 2 <= run.done_items else "with_errors")
    for j in judgments:
        assert j.raw_response, "the server answered nothing"
        if j.status == "ok":
            assert j.labels["relevance"] in {0, 1, 2, 3} and j.tokens_in > 0
        else:
            assert j.error_kind in {"invalid_json", "out_of_scale", "missing_field"}
    assert any(j.status == "ok" for j in judgments), [j.error_message for j in judgments]


@pytest.mark.django_db
def test_a_prompt_over_the_real_servers_context_is_recorded_as_context_length(llama, settings, run_inline):
    llama_endpoint(settings, llama)  # llama-cpp-python's server does not report its context: nothing to check
    version, sample, analyst = judge_setup(queries=1, depth=2, endpoint="llama", concurrency=1, max_tokens=120,
                                           doc_char_budget=20_000)
    lengthen(sample, 2, chars=16_000)  # ~3,000 tokens against n_ctx 2048
    run = run_inline(version, sample, analyst)
    assert run.status == "failed" and run.error_items == 2, run.message
    assert "context_length (2)" in run.message
    for judgment in Judgment.objects.filter(run=run):
        assert judgment.error_kind == "context_length", judgment.error_message
        assert "maximum context length is 2048 tokens" in judgment.error_message


@pytest.mark.django_db
def test_a_run_over_the_real_servers_context_is_refused_before_it_starts(llama, settings):
    assert probe_context_tokens(llama.base_url, "none", llama.model) is None  # so the setting says it
    llama_endpoint(settings, llama, context_tokens=2048)
    version, sample, analyst = judge_setup(queries=1, depth=2, endpoint="llama", concurrency=1, max_tokens=120,
                                           doc_char_budget=20_000)
    fits = judge_run_prompt_budget(version=version, sample=sample, precedent_set=None)
    assert fits.counted and fits.fits and fits.context_tokens == 2048  # counted by the server's tokenizer
    lengthen(sample, 1, chars=16_000)
    with pytest.raises(JudgeError) as refused:
        judge_run_start(version=version, sample=sample, user=analyst)
    assert "(counted with the server's tokenizer) plus 120 reserved for the answer" in str(refused.value)
    assert "a context of 2,048 tokens (SAGE_ENDPOINT_LLAMA_CONTEXT_TOKENS)" in str(refused.value)
