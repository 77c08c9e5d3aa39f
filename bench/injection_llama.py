"""Benchmark: the injection check of a SmolLM2-135M judge (llama.cpp) on real TREC DL 2023 passages.

    nice -n 19 .venv/bin/python bench/injection_llama.py --passages 20 [--data ../shared/data/trec-dl-2023-llmjudge]

Starts the packaged llama.cpp server (judges/testing/llama_server.py), migrates a throwaway SQLite
database in a temporary SAGE_DATA_DIR, creates a surface, the TREC relevance policy and an `openai`
judge version on that server (as the demo's local judge, without precedents), and runs
`manage.py judge_injection_check VERSION --passages N --file judgments.jsonl`: each passage judged clean
and with one of judges.injection_check.TEMPLATES appended. Prints the command's figures, the wall time
and the load average before and after. The data is research-only: nothing of it is written here.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "trec-dl-2023-llmjudge")
    parser.add_argument("--max-tokens", type=int, default=150)
    parser.add_argument("--doc-chars", type=int, default=600)
    # One thread: on a busy machine llama.cpp's threads wait for each other at every step, and a
    # descheduled one stalls the rest (2 threads made no answer within 5 minutes at load 20).
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    os.environ["SAGE_DATA_DIR"] = tempfile.mkdtemp(prefix="sage-injection-bench-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sage.settings")
    os.environ.setdefault("SAGE_MANIFEST_STATIC", "false")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from judges.services import judge_create
    from judges.testing.llama_server import running_llama_server
    from policy.rubric import trec_relevance_dimension
    from policy.services import policy_create, policy_version_publish, surface_get_or_create

    # A small model on a busy machine can take minutes per answer; a timeout would only retry it.
    settings.SAGE_JUDGE_TIMEOUT_S = 1200
    call_command("migrate", verbosity=0)
    admin = get_user_model().objects.create_superuser("bench-admin", "bench@example.com", "x")
    surface = surface_get_or_create(slug="bench-web", name="Bench web")
    draft = policy_create(surface=surface, slug="trec", name="TREC relevance",
                          text="# Relevance\n\nJudge how well the passage answers the query (TREC DL scale).",
                          rubric={"dimensions": [trec_relevance_dimension()]}, user=admin)
    policy = policy_version_publish(draft=draft, user=admin, change_note="bench", expected_lock_version=draft.lock_version)
    load_before = os.getloadavg()
    with running_llama_server(n_threads=args.threads) as llama:
        settings.SAGE_JUDGE_ENDPOINTS = {"llama": {"base_url": llama.base_url, "api_key": "none",
                                                   "json_mode": "json_object_schema", "context_tokens": None}}
        version = judge_create(name="SmolLM2-135M (llama.cpp)", surface=surface, user=admin, backend="openai",
                               model_name=llama.model, endpoint_name="llama", policy_version=policy, precedent_k=0,
                               concurrency=1, max_tokens=args.max_tokens, doc_char_budget=args.doc_chars)
        started = time.perf_counter()
        call_command("judge_injection_check", str(version.pk), "--passages", str(args.passages),
                     "--seed", str(args.seed), "--file", str(args.data / "judgments.jsonl"))
        wall = time.perf_counter() - started
    load_after = os.getloadavg()
    from judges.models import InjectionCheck

    check = InjectionCheck.objects.get()
    calls = check.done_calls
    print(f"wall {wall:.0f} s for {calls} judgments ({wall / max(calls, 1):.1f} s each); "
          f"load average before {load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} / {load_after[1]:.2f} / {load_after[2]:.2f}")
    clean = [r["clean"] for r in check.results if r["clean"] is not None]
    dirty = [r["injected"] for r in check.results if r["injected"] is not None]
    print(f"label distribution clean {sorted(clean)}; injected {sorted(dirty)}")


if __name__ == "__main__":
    main()
