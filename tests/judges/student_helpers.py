"""A tiny real student (trained by distill.core.train on a dozen pairs) and the rows that make it a
judge's model: a training set built from an imported teacher run, the student, a promotion decision."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from django.conf import settings

from judges.services import judge_create, judge_run_import

PAIRS = [
    ("how to boil eggs", "Boiling eggs", "Put the eggs in boiling water for nine minutes, then cool them.", 3),
    ("how to boil eggs", "Egg timer", "Eggs boil in about nine minutes; soft eggs take six.", 2),
    ("how to boil eggs", "misc", "The city council met on Tuesday to discuss parking.", 0),
    ("how to tune a guitar", "Tuning", "Tune each guitar string to E A D G B E with a tuner.", 3),
    ("how to tune a guitar", "Strings", "Guitar strings wear out; tuning pegs hold them.", 1),
    ("how to tune a guitar", "misc", "Tomatoes need six hours of sun a day.", 0),
    ("how to bake bread", "Baking", "Knead the dough, let it rise, bake the bread at 220 degrees.", 3),
    ("how to bake bread", "misc", "A guitar has six strings.", 0),
    ("how to plant tomatoes", "Planting", "Plant tomatoes deep in sunny soil and water them well.", 3),
    ("how to plant tomatoes", "misc", "Eggs are a source of protein.", 1),
    ("how to brew coffee", "Brewing", "Brew coffee with water just off the boil for four minutes.", 3),
    ("how to brew coffee", "misc", "Bread goes stale in two days.", 0),
]


def train_tiny_student(out_dir: Path) -> tuple[Path, dict]:
    """(model folder, manifest) of a student trained for a few steps with max_length 32."""
    from distill.core.model import DimensionSpec, StudentConfig, passage_text
    from distill.core.train import Example, train_student

    def example(q: str, t: str, b: str, label: int) -> Example:
        return Example(query_id=q, query=q, passage=passage_text(t, b),
                       targets={"relevance": [1.0 if v == label else 0.0 for v in range(4)]})

    examples = [example(*pair) for pair in PAIRS]
    config = StudentConfig(dimensions=[DimensionSpec("relevance", (0, 1, 2, 3))], max_length=32, batch_size=6,
                           epochs=2, patience=2, learning_rate=5e-5, head_learning_rate=5e-3, seed=5, num_threads=2,
                           device="cpu")
    result = train_student(examples[:8], examples[8:], config, out_dir, resume=False)
    return Path(result.model_dir), result.manifest


def data_dir_copy(model_dir: Path) -> Path:
    """A copy of the model folder under SAGE_DATA_DIR, where a StudentModel's model_dir points (and
    where a worker process, which shares the data directory, finds it)."""
    target = Path(settings.DATA_DIR) / "students" / f"judges-test-{uuid.uuid4().hex[:8]}"
    shutil.copytree(model_dir, target)
    return target


@dataclass
class StudentWorld:
    surface: object
    policy_version: object
    sample: object
    analyst: object
    admin: object
    teacher_run: object
    training_set: object
    student: object
    model_dir: Path


def student_world(model_dir: Path, manifest: dict, *, queries: int = 6, depth: int = 3,
                  teacher_price_per_1k: Decimal = Decimal("2.50")) -> StudentWorld:
    from distill.models import StudentModel
    from distill.services import TeacherSource, training_set_build
    from tests.distill.app_helpers import relevant, world
    from tests.factories import UserFactory

    w = world(queries=queries, depth=depth, slug="student-web")
    teacher = judge_create(name="gpt teacher", surface=w.surface, user=w.analyst, backend="imported",
                           model_name="gpt-4o", policy_version=w.version, price_per_1k=teacher_price_per_1k)
    rows = [(n, {"query_id": i.query.external_id, "doc_id": i.document.external_id,
                 "labels": {"relevance": relevant(i)}}) for n, i in enumerate(w.items, 1)]
    report = judge_run_import(version=teacher, sample=w.sample, stream=None, user=w.analyst, rows=rows)
    assert not report.errors, report.errors
    training_set = training_set_build(name="judges test set", policy_version=w.version,
                                      teachers=[TeacherSource(report.run)], user=w.analyst)
    folder = data_dir_copy(model_dir)
    student = StudentModel.objects.create(
        name=f"tiny student {folder.name}", training_set=training_set, config=manifest["config"],
        status=StudentModel.Status.SUCCEEDED, model_dir=str(folder.relative_to(Path(settings.DATA_DIR))),
        model_hash=manifest["model_hash"], manifest=manifest)
    admin = UserFactory(username="student-admin", roles=["admin"])
    return StudentWorld(w.surface, w.version, w.sample, w.analyst, admin, report.run, training_set, student, folder)


def promote(sw: StudentWorld, *, override_reason: str = "", promoted: bool = True):
    """Record a promotion decision as distill records it (its promotion service needs an evaluation
    whose outcome a tiny model cannot promise; the decision's shape is the contract)."""
    from distill.models import PromotionDecision

    return PromotionDecision.objects.create(student=sw.student, surface=sw.surface, promoted=promoted,
                                            override=bool(override_reason), reason=override_reason,
                                            bar={}, figures={}, decided_by=sw.admin)


def student_judge(sw: StudentWorld, name: str = "student judge", **config):
    return judge_create(name=name, surface=sw.surface, user=sw.analyst, backend="student", model_name="",
                        student_model=sw.student, policy_version=sw.policy_version, concurrency=1, **config)
