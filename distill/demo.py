"""The demo's student: a training set from the five imported LLMJudge runs (soft targets across the
teachers) plus the NIST labels (humans outrank teachers), and a small training run queued on it.

Once a worker takes it (minutes on 2 cores, progress on the model page), the chain runs as tasks:
evaluate on the test queries → promote on the demo surface if it meets the bar → create a student
judge and queue its run over the calibration sample, so the teacher/student table fills in. Each
step's outcome, a failure included, is written on the model page.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model

from judges.demo import RUNS
from judges.models import JudgeRun
from policy.demo import POLICY_SLUG, SURFACE_SLUG
from policy.models import Policy
from traffic.demo import CALIBRATION_SAMPLE
from traffic.models import Sample

from .models import TrainingSet
from .services import TeacherSource, student_train_start, training_set_build

TRAINING_SET = "Demo: LLMJudge teachers + NIST"
STUDENT_JUDGE = "Student: demo MiniLM"
# Small enough for minutes on 2 CPU cores, large enough to learn something from a few hundred pairs.
# The demo holds 6 queries: two test queries give the bootstrap intervals something to resample.
DEMO_FRACTIONS = {"train": 0.5, "validation": 0.17, "test": 0.33}
DEMO_CONFIG = {"epochs": 6, "max_length": 128, "batch_size": 16, "patience": 2}


def demo_distill_load() -> list[str]:
    policy = Policy.objects.get(surface__slug=SURFACE_SLUG, slug=POLICY_SLUG)
    v1 = policy.versions.get(number=1)
    analyst = get_user_model().objects.get(username="demo-analyst")
    runs = list(JudgeRun.objects.filter(judge_version__judge__name__in=[f"LLMJudge: {r}" for r in RUNS],
                                        status=JudgeRun.Status.SUCCEEDED).order_by("pk"))
    if not runs:
        return ["distill: no imported teacher runs, no training set"]
    lines = []
    training_set = TrainingSet.objects.filter(name=TRAINING_SET).order_by("-version").first()
    if training_set is None:
        training_set = training_set_build(name=TRAINING_SET, policy_version=v1, user=analyst,
                                          teachers=[TeacherSource(run) for run in runs], include_human_labels=True,
                                          include_precedents=True,
                                          humans_outrank_teachers=True, seed=7, fractions=DEMO_FRACTIONS)
        counts = training_set.counts
        lines.append(f"training set {training_set}: {counts['train']['examples']} / {counts['validation']['examples']} / "
                     f"{counts['test']['examples']} examples (train / validation / test) from {len(runs)} teacher runs, "
                     "NIST labels and accepted precedents")
    if not settings.SAGE_DISTILL_DEMO_TRAIN:
        return lines + ["demo student not trained (SAGE_DISTILL_DEMO_TRAIN=false)"]
    if training_set.students.exists():
        return lines or ["demo student (already queued)"]
    sample = Sample.objects.get(surface=policy.surface, name=CALIBRATION_SAMPLE)
    student = student_train_start(training_set=training_set, user=analyst, config=DEMO_CONFIG, name="Demo student (MiniLM)",
                                  pipeline={"promote_surface": policy.surface_id, "judge_sample": sample.pk,
                                            "judge_name": STUDENT_JUDGE})
    lines.append(f"queued training of {student.name!r} (#{student.pk}); then evaluation, promotion if it meets the bar, "
                 "and a student judge run over the calibration sample")
    return lines



