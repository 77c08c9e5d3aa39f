"""The regression gate end to end: 1,000 queries x top-10, the control already judged.

    ./run bench nice -n 10 .venv/bin/python bench/gate.py [--queries 1000] [--k 10] [--new 5]
                                                          [--latency-ms 200] [--workers 2]
    ./run bench nice -n 19 .venv/bin/python bench/gate.py --judge student --student-model DIR

`--judge frontier` (the default): a fault-free fault server (its own process, `--latency-ms` per
request) stands in for a frontier model behind an OpenAI-compatible endpoint. `--judge student`: the
student model folder DIR (a distill model folder with manifest.json, e.g. one bench/distill_trec.py
left under var/distill-trec/) judges through the `student` backend, as a promoted student judge does.
Real Celery worker processes judge through Redis (listening to the default and the student queue);
PostgreSQL holds everything (./run bench starts both).

A student trained outside SAGE has no StudentModel row, so `--judge student` registers one the way the
app records a trained student, before anything is timed: the folder is copied under SAGE_DATA_DIR; a
stand-in teacher run (an `imported` judge's labels for 40 of the control's queries, labels derived from
the document id — nothing was trained on them) gives it a training set on the bench's surface; the
student is evaluated there (`student_evaluate`: no human labels, so the promotion bar cannot be met)
and promoted by an **admin override with a recorded reason** (`student_promote(..., override_reason=)`).
That is acceptable for a timing bench only; the student's quality is measured on real labels elsewhere
(BENCHMARKS.md, "Student judge on real data").

1. Traffic: the control's top k for every query; the candidate's list keeps `k - new` of the control's
   documents (reordered) and brings `new` documents of its own per query.
2. Baseline, measured first: the control judged cold — a judge run over its top k (what a gate costs
   when nothing is judged yet; also what makes "the control already judged" true).
3. The gate, as CI runs it: `gate_run_start` with the candidate's traffic file (the import is part of
   the gate's time), then `gate_run_refresh` polled as `manage.py sage_gate` does, until the verdict.
   The comparison's judge run takes the control's items from the judge cache, so only the candidate's
   new items go to the model. Reported: wall time and its parts (import, judging, computing).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rows(variant: str, queries: int, k: int, new: int) -> bytes:
    out = []
    for q in range(queries):
        shared = [f"q{q}-d{i}" for i in range(k)]
        docs = shared if variant == "control" else shared[:k - new][::-1] + [f"q{q}-cand-d{i}" for i in range(new)]
        for rank, doc in enumerate(docs, 1):
            out.append(json.dumps({"variant": variant, "query": f"bench gate query {q}", "query_id": f"q{q}",
                                   "rank": rank, "doc_id": doc,
                                   "body": f"Passage {doc} about topic {sum(map(ord, doc)) % 97}. " * 8}).encode())
    return b"\n".join(out) + b"\n"


BENCH_OVERRIDE = ("Timing bench only (bench/gate.py): a student trained outside SAGE on TREC DL by "
                  "bench/distill_trec.py, evaluated here without human labels; its quality against NIST labels is "
                  "in BENCHMARKS.md, not vouched for by this promotion.")


def student_judge(model_dir: Path, *, stamp: int, surface, policy, admin, k: int):
    """A judge version backed by the student in `model_dir`, promoted on `surface` by an admin override
    (see the module docstring: the rows the app keeps for a trained student, made before any timing)."""
    import shutil

    from django.conf import settings

    from distill.core.model import read_manifest
    from distill.models import StudentModel
    from distill.services import TeacherSource, student_evaluate, student_promote, training_set_build
    from judges.services import judge_create, judge_run_import
    from traffic.models import Item
    from traffic.services import sample_draw

    manifest = read_manifest(model_dir)
    folder = Path(settings.DATA_DIR) / "students" / f"gate-bench-{stamp}"
    shutil.copytree(model_dir, folder)
    teacher = judge_create(name=f"stand-in teacher {stamp}", surface=surface, user=admin, backend="imported",
                           model_name="stand-in", policy_version=policy)
    sample = sample_draw(surface=surface, name="stand-in teacher sample", strategy="top_k",
                         params={"k": k, "variants": ["control"], "queries": 40}, seed=0, user=admin)
    items = Item.objects.filter(sample_items__sample=sample).select_related("query", "document")
    rows = [(n, {"query_id": i.query.external_id, "doc_id": i.document.external_id,
                 "labels": {"relevance": sum(map(ord, i.document.external_id)) % 4}}) for n, i in enumerate(items, 1)]
    report = judge_run_import(version=teacher, sample=sample, stream=None, user=admin, rows=rows)
    if report.errors:
        raise SystemExit(f"the stand-in teacher's import failed: {report.errors[:3]}")
    training_set = training_set_build(name=f"gate bench {stamp}", policy_version=policy,
                                      teachers=[TeacherSource(report.run)], user=admin)
    student = StudentModel.objects.create(
        name=f"{model_dir.parent.name}-{stamp}"[:120], training_set=training_set, config=manifest.get("config", {}),
        status=StudentModel.Status.SUCCEEDED, model_dir=str(folder.relative_to(Path(settings.DATA_DIR))),
        model_hash=manifest["model_hash"], manifest=manifest)
    student_evaluate(student=student, n_resamples=200)
    decision = student_promote(student=student, surface=surface, user=admin, override_reason=BENCH_OVERRIDE)
    if not decision.promoted:
        raise SystemExit(f"the student was not promoted: {decision.reason}")
    return judge_create(name=f"student {stamp}", surface=surface, user=admin, backend="student", model_name="",
                        student_model=student, policy_version=policy, concurrency=1)


def promotion_reason(judge) -> str:
    from distill.selectors import student_promotion

    decision = student_promotion(judge.student_model, judge.judge.surface)
    return "" if decision is None else ("override: " if decision.override else "") + decision.reason[:80]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--new", type=int, default=5, help="the candidate's documents per query the control lacks")
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--concurrency", type=int, default=64, help="the judge's requests in flight per chunk")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--judge", choices=("frontier", "student"), default="frontier",
                        help="frontier: the fault server stands in for a frontier model; student: --student-model judges")
    parser.add_argument("--student-model", type=Path, default=None, help="a student model folder (with manifest.json)")
    args = parser.parse_args()
    if not os.environ.get("CELERY_BROKER_URL", "").startswith("redis://"):
        raise SystemExit("run it under ./run bench (PostgreSQL + Redis)")
    if args.judge == "student" and (args.student_model is None or not (args.student_model / "manifest.json").is_file()):
        raise SystemExit("--judge student needs --student-model DIR, a student model folder with manifest.json")

    port = free_port()
    server = None if args.judge == "student" else subprocess.Popen(
        [sys.executable, "-m", "judges.testing.fault_server", "--port", str(port), "--latency-ms", str(args.latency_ms)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"SAGE_ENDPOINTS": "fault", "SAGE_ENDPOINT_FAULT_BASE_URL": f"http://127.0.0.1:{port}/v1",
           "SAGE_ENDPOINT_FAULT_API_KEY": "bench", "SAGE_ENDPOINT_FAULT_JSON_MODE": "json_schema",
           "SAGE_JUDGE_CHUNK_SIZE": "500", "SAGE_GATE_POLL_S": "1", "SAGE_COMPARISON_POLL_S": "1"}
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sage.settings")
    workers: list[subprocess.Popen] = []
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from gates.models import GateRun
        from gates.services import gate_create, gate_run_refresh, gate_run_start
        from judges.models import JudgeRun
        from judges.services import judge_create, judge_run_start
        from policy.rubric import trec_relevance_dimension
        from policy.services import policy_create, policy_version_publish, surface_get_or_create
        from sage.roles import Role
        from sage.services import user_upsert
        from traffic.services import sample_draw, traffic_import, variant_get_or_create

        stamp = int(time.time())
        admin, _ = user_upsert(username="bench-admin", password=None, roles=[Role.ADMIN])
        surface = surface_get_or_create(slug=f"gate-bench-{stamp}", name="gate bench")
        control = variant_get_or_create(surface=surface, name="control", role="control")
        traffic_import(surface=surface, source=io.BytesIO(rows("control", args.queries, args.k, args.new)),
                       filename="control.jsonl", user=admin)
        draft = policy_create(surface=surface, slug="rel", name="Relevance", text="# Relevance\n\nJudge passages.\n",
                              rubric={"dimensions": [trec_relevance_dimension()]}, user=admin)
        policy = policy_version_publish(draft=draft, user=admin, change_note="bench",
                                        expected_lock_version=draft.lock_version)
        if args.judge == "student":
            judge = student_judge(args.student_model, stamp=stamp, surface=surface, policy=policy, admin=admin, k=args.k)
        else:
            judge = judge_create(name=f"frontier stand-in {stamp}", surface=surface, user=admin, backend="openai",
                                 model_name="bench-frontier", endpoint_name="fault", policy_version=policy,
                                 precedent_k=0, concurrency=args.concurrency)
        from django.conf import settings

        queues = ",".join(dict.fromkeys((settings.CELERY_TASK_DEFAULT_QUEUE, settings.SAGE_STUDENT_QUEUE)))
        for n in range(args.workers):
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "sage", "worker", "--concurrency=1", "--loglevel=WARNING",
                 "-Q", queues, "--without-gossip", "--without-mingle", "-n", f"gate-bench-{n}@%h"],
                cwd=ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(8)

        # Baseline: the control judged cold.
        sample = sample_draw(surface=surface, name="control top k", strategy="top_k",
                             params={"k": args.k, "variants": ["control"]}, seed=0, user=admin)
        started = time.perf_counter()
        run = judge_run_start(version=judge, sample=sample, user=admin)
        wait_for(lambda: not JudgeRun.objects.get(pk=run.pk).is_active, 1800, "the control's judge run")
        cold_s = time.perf_counter() - started
        run.refresh_from_db()
        assert run.status == "succeeded", run.message

        # The gate, as CI runs it.
        gate = gate_create(user=admin, name=f"bench-{stamp}", surface=surface, baseline=control,
                           judge_version=judge, k=args.k, metrics={f"ndcg@{args.k}": -0.02,
                                                                   f"precision@{args.k}": -0.02},
                           timeout_s=3600)
        candidate_file = rows("candidate", args.queries, args.k, args.new)
        started = time.perf_counter()
        start = gate_run_start(gate=gate, candidate="candidate", user=admin, source=GateRun.Source.COMMAND,
                               traffic=io.BytesIO(candidate_file), filename="candidate.jsonl")
        started_run_s = time.perf_counter() - started
        gate_run = wait_for(lambda: (lambda r: None if r.is_active else r)(gate_run_refresh(run_id=start.run.pk)),
                            3600, "the gate's verdict")
        gate_s = time.perf_counter() - started
        comparison = gate_run.comparison
        judge_run = comparison.judge_run
        judge_run.refresh_from_db()
        judging_s = (judge_run.finished_at - judge_run.started_at).total_seconds()
        compute_s = (comparison.finished_at - judge_run.finished_at).total_seconds()
        sent = judge_run.total_items - judge_run.cached_items
        judged_by = (f"student {judge.student_model.name} (model {judge.student_model.model_hash[:12]}, promoted by "
                     f"an admin override: {promotion_reason(judge)!r})" if args.judge == "student" else
                     f"fault server {args.latency_ms:g} ms, judge concurrency {args.concurrency}")
        print(f"\n{args.queries} queries x top-{args.k}, candidate {args.new} new documents per query; {judged_by}; "
              f"{args.workers} worker processes; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}\n")
        print("| measurement | items to the model | cached | wall s |")
        print("|---|---:|---:|---:|")
        print(f"| baseline: control judged cold (judge run) | {run.total_items - run.cached_items:,} | "
              f"{run.cached_items:,} | {cold_s:.1f} |")
        print(f"| **gate end to end** (import + comparison + judging + verdict) | {sent:,} | "
              f"{judge_run.cached_items:,} | **{gate_s:.1f}** |")
        print(f"|   import of the candidate's traffic + start | | | {started_run_s:.1f} |")
        print(f"|   judging (the comparison's judge run) | | | {judging_s:.1f} |")
        print(f"|   computing the verdict after judging | | | {compute_s:.1f} |")
        print(f"\nverdict: {gate_run.status} (exit {gate_run.exit_code}); {gate_run.message}")
        print(f"gate / cold control: {gate_s / cold_s:.2f}; judgments/s in the gate: {sent / judging_s:.0f}")
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(timeout=20)
            except subprocess.TimeoutExpired:
                w.kill()
        if server is not None:
            server.terminate()


if __name__ == "__main__":
    main()
