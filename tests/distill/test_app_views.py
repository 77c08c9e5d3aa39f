"""The distill pages: analysts build and train, reviewers read without forms, bad input is kept and
explained, the status fragment polls alone, promotion refusals and overrides are shown."""

from __future__ import annotations

import pytest

from distill.models import PromotionDecision, StudentEvaluation, StudentModel, TrainingSet
from distill.services import TeacherSource, training_set_build
from tests.distill.app_helpers import human_labels, relevant, teacher_run, world

pytestmark = pytest.mark.django_db


@pytest.fixture
def built():
    w = world(queries=6)
    run = teacher_run(w, "teacher", relevant)
    human_labels(w, relevant)
    ts = training_set_build(name="pages", policy_version=w.version, teachers=[TeacherSource(run)], user=w.analyst,
                            include_human_labels=True)
    return w, run, ts


def _student(ts, **fields):
    return StudentModel.objects.create(name=fields.pop("name", "st"), training_set=ts, model_dir="students/x", **fields)


def test_an_analyst_builds_a_training_set_from_the_page(client, analyst):
    w = world(queries=6)
    run = teacher_run(w, "teacher", relevant)
    client.force_login(analyst)
    assert 'id="new-training-set"' in client.get("/distill/").content.decode()
    response = client.post("/distill/training-sets/new/", {
        "name": "From the page", "policy_version": w.version.pk, "runs": [run.pk], f"weight-{run.pk}": "2",
        "precedent_weight": "1", "human_weight": "1", "humans_outrank_teachers": "on", "seed": "3",
        "train": "0.6", "validation": "0.2", "test": "0.2"})
    ts = TrainingSet.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/distill/training-sets/{ts.pk}/"
    assert ts.seed == 3 and ts.sources.get().weight == 2.0
    html = client.get(response["Location"]).content.decode()
    assert 'id="split-counts"' in html and 'data-split="test"' in html and 'id="no-human-test"' in html


def test_a_refused_build_keeps_what_was_typed_and_says_why(client, analyst):
    w = world(queries=2)
    run = teacher_run(w, "teacher", relevant)
    client.force_login(analyst)
    response = client.post("/distill/training-sets/new/", {
        "name": "Too small", "policy_version": w.version.pk, "runs": [run.pk], f"weight-{run.pk}": "5",
        "precedent_weight": "1", "human_weight": "1", "seed": "0", "train": "0.7", "validation": "0.15", "test": "0.15"})
    html = response.content.decode()
    assert response.status_code == 422 and "split is empty" in html
    assert 'value="Too small"' in html and f'name="weight-{run.pk}" value="5"' in html and "checked" in html
    assert not TrainingSet.objects.exists()


def test_a_bad_weight_is_a_form_error(client, analyst):
    w = world(queries=6)
    run = teacher_run(w, "teacher", relevant)
    client.force_login(analyst)
    response = client.post("/distill/training-sets/new/", {
        "name": "x", "policy_version": w.version.pk, "runs": [run.pk], f"weight-{run.pk}": "-1e9",
        "precedent_weight": "1", "human_weight": "1", "seed": "0", "train": "0.7", "validation": "0.15", "test": "0.15"})
    assert response.status_code == 422 and "must be a number above 0" in response.content.decode()


def test_a_reviewer_reads_the_pages_without_forms_and_cannot_post(client, reviewer, built):
    _, _, ts = built
    student = _student(ts, status="succeeded", model_hash="a" * 64)
    client.force_login(reviewer)
    index = client.get("/distill/").content.decode()
    assert 'id="distill-role-note"' in index and 'id="new-training-set"' not in index
    detail = client.get(f"/distill/training-sets/{ts.pk}/").content.decode()
    assert 'id="train-role-note"' in detail and 'id="train-form"' not in detail
    page = client.get(f"/distill/students/{student.pk}/").content.decode()
    assert 'id="promote-role-note"' in page and 'id="promote-form"' not in page and 'id="cancel-training"' not in page
    assert client.get("/distill/training-sets/new/").status_code == 403
    assert client.post(f"/distill/training-sets/{ts.pk}/train/", {"epochs": "1"}).status_code == 403
    before = StudentModel.objects.count()
    client.post(f"/distill/students/{student.pk}/promote/", {})
    client.post(f"/distill/students/{student.pk}/cancel/")
    assert StudentModel.objects.count() == before and not PromotionDecision.objects.exists()


def test_starting_training_from_the_page_queues_a_run(client, analyst, built, django_capture_on_commit_callbacks):
    _, _, ts = built
    client.force_login(analyst)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(f"/distill/training-sets/{ts.pk}/train/", {
            "epochs": "2", "max_length": "32", "batch_size": "8", "head": "coral", "name": "tiny"})
    student = StudentModel.objects.get()
    assert response.status_code == 302 and student.status == "queued" and len(callbacks) == 1
    assert student.config["epochs"] == 2 and student.config["max_length"] == 32
    assert student.config["dimensions"] == [{"key": "relevance", "values": [0, 1, 2, 3]}]
    bad = client.post(f"/distill/training-sets/{ts.pk}/train/", {"epochs": "0", "max_length": "32", "batch_size": "8",
                                                                 "head": "coral"})
    assert bad.status_code == 422 and StudentModel.objects.count() == 1


def test_the_status_fragment_polls_alone_and_reloads_once_training_ends(client, analyst, built):
    _, _, ts = built
    student = _student(ts, status="running", step=3, steps_total=10,
                       history={"loss": [{"step": 1, "epoch": 1, "loss": 1.2}], "val": []})
    client.force_login(analyst)
    fragment = client.get(f"/distill/students/{student.pk}/", headers={"HX-Request": "true", "HX-Target": "student-status"})
    html = fragment.content.decode()
    assert "<html" not in html and 'id="student-progress" value="3" max="10"' in html and 'hx-trigger="every 2s"' in html
    assert 'id="loss-spec"' in html and "HX-Refresh" not in fragment
    StudentModel.objects.filter(pk=student.pk).update(status="failed", message="A worker task failed: boom")
    ended = client.get(f"/distill/students/{student.pk}/", headers={"HX-Request": "true", "HX-Target": "student-status"})
    assert ended["HX-Refresh"] == "true" and "This training failed." in ended.content.decode()


def test_a_refusal_names_the_dimension_and_an_admin_sees_the_override_form(client, analyst, admin_user, built):
    _, run, ts = built
    student = _student(ts, status="succeeded", model_hash="b" * 64)
    agreement = lambda a: {"n": 10, "n_queries": 2, "estimates": {"alpha": a}, "ci": {}, "confusion": [[2, 1, 0, 0], [1, 2, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]], "reason": None}  # noqa: E731
    StudentEvaluation.objects.create(student=student, model_hash=student.model_hash, seconds_per_1k=3.0, figures={
        "items": 10, "queries": 2, "has_human_labels": True, "teachers": {str(run.pk): "teacher v1"},
        "dimensions": {"relevance": {"values": [0, 1, 2, 3], "human_items": 10, "student_human": agreement(0.2),
                                     "teacher_human": {str(run.pk): agreement(0.8)}, "student_teacher": {}}}})
    client.force_login(analyst)
    client.post(f"/distill/students/{student.pk}/promote/", {})
    html = client.get(f"/distill/students/{student.pk}/").content.decode()
    assert 'id="promotion-refused"' in html and "relevance: student-human alpha 0.200 is 0.520 below the bar 0.720" in html
    assert "override_reason" not in html  # an analyst gets no override field
    client.force_login(admin_user)
    html = client.get(f"/distill/students/{student.pk}/").content.decode()
    assert 'name="override_reason"' in html
    client.post(f"/distill/students/{student.pk}/promote/", {"override_reason": "Pilot <b>only</b>"})
    html = client.get(f"/distill/students/{student.pk}/").content.decode()
    assert 'id="promotion-override"' in html and "Pilot &lt;b&gt;only&lt;/b&gt;" in html
    assert 'id="costs"' in html
