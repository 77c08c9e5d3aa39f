"""Promotion: refused below the bar with the dimension and the shortfall, accepted at or above it,
per-surface bars, admin overrides with a recorded reason, and what judges ask (student_promotion)."""

from __future__ import annotations

import pytest

from distill.models import PromotionBar, PromotionDecision, StudentEvaluation, StudentModel
from distill.selectors import student_model_path, student_promotion
from distill.services import DistillError, TeacherSource, promotion_bar_set, student_promote, training_set_build
from tests.distill.app_helpers import relevant, teacher_run, world

pytestmark = pytest.mark.django_db


def _agreement(alpha):
    return {"n": 40, "n_queries": 8, "estimates": {"alpha": alpha, "kappa_linear": alpha, "kappa": alpha, "exact": 0.5},
            "ci": {"alpha": [alpha - 0.1, alpha + 0.1]}, "confusion": [], "reason": None}


@pytest.fixture
def student():
    w = world(queries=6)
    run = teacher_run(w, "teacher", relevant)
    ts = training_set_build(name="p", policy_version=w.version, teachers=[TeacherSource(run)], user=w.analyst)
    s = StudentModel.objects.create(name="s", training_set=ts, status="succeeded", model_hash="h" * 64,
                                    model_dir="students/1/model")
    s.run = run
    s.analyst = w.analyst
    return s


def _evaluate(student, *, student_alpha, teacher_alphas, human=True):
    figures = {"items": 40, "queries": 8, "has_human_labels": human, "teachers": {}, "dimensions": {
        "relevance": {"values": [0, 1, 2, 3], "human_items": 40 if human else 0,
                      "student_human": _agreement(student_alpha),
                      "teacher_human": {str(k): _agreement(v) for k, v in teacher_alphas.items()},
                      "student_teacher": {}}}}
    return StudentEvaluation.objects.create(student=student, model_hash=student.model_hash, figures=figures,
                                            seconds_per_1k=2.0)


def test_a_student_below_the_bar_is_refused_with_the_dimension_and_the_shortfall(student):
    _evaluate(student, student_alpha=0.60, teacher_alphas={student.run.pk: 0.80})
    decision = student_promote(student=student, surface=student.training_set.surface, user=student.analyst)
    assert not decision.promoted and not decision.override
    # the bar is 0.9 x 0.80 = 0.72; the student misses it by 0.12
    assert "relevance: student-human alpha 0.600 is 0.120 below the bar 0.720" in decision.reason
    assert decision.figures["dimensions"]["relevance"]["margin"] == pytest.approx(-0.12)
    assert student_promotion(student, student.training_set.surface) is None


def test_a_student_at_or_above_the_bar_is_promoted_against_the_best_teacher(student):
    other = teacher_run(_world_of(student), "teacher2", relevant)
    _evaluate(student, student_alpha=0.72, teacher_alphas={student.run.pk: 0.70, other.pk: 0.80})
    decision = student_promote(student=student, surface=student.training_set.surface, user=student.analyst)
    assert decision.promoted and decision.figures["dimensions"]["relevance"]["teacher_run"] == str(other.pk)
    assert student_promotion(student, student.training_set.surface) == decision


def _world_of(student):
    """The test world behind the fixture's student, for a second teacher run on the same sample."""
    from tests.distill.app_helpers import World
    from traffic.models import Item

    ts = student.training_set
    sample = student.run.sample
    items = list(Item.objects.filter(sample_items__sample=sample).select_related("query", "document")
                 .order_by("sample_items__position"))
    return World(ts.surface, ts.policy_version, sample, student.analyst, items)


def test_a_surface_bar_replaces_the_default(student, admin_user):
    surface = student.training_set.surface
    promotion_bar_set(surface=surface, metric="alpha", ratio=1.1, user=admin_user)
    _evaluate(student, student_alpha=0.80, teacher_alphas={student.run.pk: 0.80})
    refused = student_promote(student=student, surface=surface, user=student.analyst)
    assert not refused.promoted and refused.bar["ratio"] == 1.1 and refused.bar["source"] == "surface"
    PromotionBar.objects.filter(surface=surface).update(ratio=0.5)
    assert student_promote(student=student, surface=surface, user=student.analyst).promoted


def test_a_test_split_without_human_labels_cannot_pass(student):
    _evaluate(student, student_alpha=0.9, teacher_alphas={student.run.pk: 0.5}, human=False)
    decision = student_promote(student=student, surface=student.training_set.surface, user=student.analyst)
    assert not decision.promoted and "no human labels" in decision.reason


def test_an_admin_overrides_a_refusal_with_a_recorded_reason(student, admin_user):
    _evaluate(student, student_alpha=0.1, teacher_alphas={student.run.pk: 0.8})
    surface = student.training_set.surface
    with pytest.raises(DistillError, match="Only admins can override"):
        student_promote(student=student, surface=surface, user=student.analyst, override_reason="trust me")
    decision = student_promote(student=student, surface=surface, user=admin_user,
                               override_reason="Cheap triage pre-filter; humans check every label.")
    assert decision.promoted and decision.override and decision.reason.startswith("Cheap triage")
    assert student_promotion(student, surface).override
    # a later refusal on the same surface withdraws it
    student_promote(student=student, surface=surface, user=student.analyst)
    assert student_promotion(student, surface) is None


def test_promotion_needs_a_current_evaluation_and_the_right_surface(student):
    with pytest.raises(DistillError, match="Evaluate the student first"):
        student_promote(student=student, surface=student.training_set.surface, user=student.analyst)
    _evaluate(student, student_alpha=0.9, teacher_alphas={student.run.pk: 0.5})
    StudentModel.objects.filter(pk=student.pk).update(model_hash="new" * 16)
    student.refresh_from_db()
    with pytest.raises(DistillError, match="Evaluate the student first"):
        student_promote(student=student, surface=student.training_set.surface, user=student.analyst)
    from policy.services import surface_get_or_create

    elsewhere = surface_get_or_create(slug="elsewhere", name="Elsewhere")
    with pytest.raises(DistillError, match="trained for surface"):
        student_promote(student=student, surface=elsewhere, user=student.analyst)
    assert not PromotionDecision.objects.exists()


def test_the_model_path_is_the_folder_under_the_data_directory(student, settings):
    assert student_model_path(student) == (settings.DATA_DIR / "students/1/model").resolve()


def test_the_demo_chain_promotes_a_passing_student_and_queues_its_judge_run(student, django_capture_on_commit_callbacks):
    from distill.services import student_pipeline
    from judges.models import JudgeRun

    _evaluate(student, student_alpha=0.85, teacher_alphas={student.run.pk: 0.80})
    StudentModel.objects.filter(pk=student.pk).update(
        created_by=student.analyst, pipeline={"promote_surface": student.training_set.surface_id,
                                              "judge_sample": student.run.sample_id, "judge_name": "Student judge"})
    with django_capture_on_commit_callbacks(execute=False) as queued:
        outcome = student_pipeline(student_id=student.pk)
    student.refresh_from_db()
    assert outcome == "promoted; judge run queued", student.followups
    run = JudgeRun.objects.get(judge_version__judge__name="Student judge")
    assert run.judge_version.student_model_id == student.pk and run.status == "queued" and len(queued) == 1
    assert student.followups["promote"] == "Promoted." and f"#{run.pk}" in student.followups["judge"]


def test_the_demo_chain_stops_at_a_refusal_and_says_so(student):
    from distill.services import student_pipeline
    from judges.models import Judge

    _evaluate(student, student_alpha=0.1, teacher_alphas={student.run.pk: 0.80})
    StudentModel.objects.filter(pk=student.pk).update(
        pipeline={"promote_surface": student.training_set.surface_id, "judge_sample": student.run.sample_id})
    assert student_pipeline(student_id=student.pk) == "not promoted"
    student.refresh_from_db()
    assert student.followups["promote"].startswith("Not promoted: relevance: student-human alpha 0.100")
    assert not Judge.objects.filter(name__startswith="Student").exists()


def test_the_promotion_note_for_run_pages_shows_an_override_reason(student, admin_user):
    from django.template.loader import render_to_string

    from distill.selectors import promotion_note

    surface = student.training_set.surface
    _evaluate(student, student_alpha=0.1, teacher_alphas={student.run.pk: 0.8})
    assert 'id="student-unpromoted-note"' in render_to_string("distill/_promotion_note.html",
                                                              {"note": promotion_note(student, surface)})
    student_promote(student=student, surface=surface, user=admin_user, override_reason="Pilot <i>only</i>")
    html = render_to_string("distill/_promotion_note.html", {"note": promotion_note(student, surface)})
    assert 'id="student-override-note"' in html and "Pilot &lt;i&gt;only&lt;/i&gt;" in html
    assert promotion_note(None, surface) is None
