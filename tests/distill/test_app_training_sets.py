"""Training sets: split by query with no leakage, soft targets across teachers, humans outranking
teachers, versioning by name, and every bad input refused with nothing written."""

from __future__ import annotations

import pytest

from distill.models import TrainingExample, TrainingSet, TrainingSetSource
from distill.services import DistillError, TeacherSource, split_queries, training_set_build
from policy.rubric import trec_relevance_dimension
from tests.distill.app_helpers import human_labels, relevant, teacher_run, world
from tests.factories import published_version

pytestmark = pytest.mark.django_db

EXTRA = {"key": "freshness", "name": "Freshness", "description": "How current the passage is.",
         "levels": [{"value": 0, "label": "stale", "definition": "old"}, {"value": 1, "label": "fresh", "definition": "new"}]}


def _nothing_written():
    assert not TrainingSet.objects.exists()
    assert not TrainingExample.objects.exists()
    assert not TrainingSetSource.objects.exists()


def test_no_query_is_on_two_sides_of_the_split_whatever_the_seed():
    w = world(queries=12)
    run = teacher_run(w, "t1", relevant)
    for seed in range(5):
        ts = training_set_build(name=f"s{seed}", policy_version=w.version, teachers=[TeacherSource(run)],
                                user=w.analyst, seed=seed)
        sides = {}
        for key, split in ts.examples.values_list("query_key", "split"):
            sides.setdefault(key, set()).add(split)
        assert all(len(s) == 1 for s in sides.values())
        assert {next(iter(s)) for s in sides.values()} == {"train", "validation", "test"}
        assert sum(ts.counts[s]["queries"] for s in ("train", "validation", "test")) == 12


def test_the_split_is_seeded_and_follows_the_fractions():
    keys = [f"q{i}" for i in range(40)]
    fractions = {"train": 0.5, "validation": 0.25, "test": 0.25}
    a = split_queries(keys, seed=3, fractions=fractions)
    assert a == split_queries(list(reversed(keys)), seed=3, fractions=fractions)
    assert a != split_queries(keys, seed=4, fractions=fractions)
    assert sorted(list(a.values()).count(s) for s in ("train", "validation", "test")) == [10, 10, 20]


def test_several_teachers_give_a_weighted_soft_target_and_a_median_label():
    w = world(queries=6)
    r1 = teacher_run(w, "t1", relevant)  # 3 or 0
    r2 = teacher_run(w, "t2", lambda i: 2 if relevant(i) else 1)
    ts = training_set_build(name="soft", policy_version=w.version,
                            teachers=[TeacherSource(r1, 1.0), TeacherSource(r2, 3.0)], user=w.analyst)
    relevant_example = ts.examples.filter(title__in=[i.document.title for i in w.items if relevant(i)]).first()
    assert relevant_example.targets == {"relevance": [0.0, 0.0, 0.75, 0.25]}
    assert relevant_example.labels == {"relevance": 2}  # median of 3 and 2, halfway rounds down
    other = ts.examples.filter(title="misc").first()
    assert other.targets == {"relevance": [0.25, 0.75, 0.0, 0.0]}
    assert other.weight == 3.0
    assert ts.sources.get(judge_run=r2).weight == 3.0 and ts.sources.get(judge_run=r2).examples == len(w.items)


def test_human_labels_outrank_teachers_on_their_items_unless_told_otherwise():
    w = world(queries=6)
    run = teacher_run(w, "t1", relevant)
    labelled = w.items[:4]
    human_labels(w, lambda i: 1, items=labelled)  # humans disagree with the teacher everywhere
    ts = training_set_build(name="humans", policy_version=w.version, teachers=[TeacherSource(run)], user=w.analyst,
                            include_human_labels=True, human_weight=2.0)
    for e in ts.examples.filter(item__in=labelled):
        assert e.targets == {"relevance": [0.0, 1.0, 0.0, 0.0]} and e.labels == {"relevance": 1}
        assert e.provenance["labels"]["relevance"]["sources"] == ["humans"] and e.weight == 2.0
    untouched = ts.examples.exclude(item__in=labelled).first()
    assert untouched.provenance["labels"]["relevance"]["sources"] == [f"run {run.pk}"]
    mixed = training_set_build(name="mixed", policy_version=w.version, teachers=[TeacherSource(run)], user=w.analyst,
                               include_human_labels=True, humans_outrank_teachers=False)
    e = mixed.examples.get(item=labelled[0])
    teacher_value = relevant(labelled[0])
    expected = [0.0] * 4
    expected[teacher_value] += 0.5
    expected[1] += 0.5
    assert e.targets == {"relevance": expected}
    assert ts.counts["human_items"] == 4


def test_the_same_content_is_the_same_version_and_new_content_the_next():
    w = world(queries=6)
    run = teacher_run(w, "t1", relevant)
    first = training_set_build(name="v", policy_version=w.version, teachers=[TeacherSource(run)], user=w.analyst)
    again = training_set_build(name="v", policy_version=w.version, teachers=[TeacherSource(run)], user=w.analyst)
    assert again.pk == first.pk and TrainingSet.objects.count() == 1
    second = training_set_build(name="v", policy_version=w.version, teachers=[TeacherSource(run)], user=w.analyst, seed=9)
    assert second.version == 2 and second.content_hash != first.content_hash


def test_accepted_precedents_are_examples_of_their_own():
    from precedent.models import Precedent

    w = world(queries=6)
    run = teacher_run(w, "t1", relevant)
    Precedent.objects.create(policy=w.version.policy, query="how to juggle", title="Juggling", body="Juggle three balls.",
                             labels={"relevance": 3}, rationale="on topic", status="accepted", accepted_version=w.version,
                             content_hash="x", author=w.analyst)
    ts = training_set_build(name="p", policy_version=w.version, teachers=[TeacherSource(run)], user=w.analyst,
                            include_precedents=True)
    e = ts.examples.get(item__isnull=True)
    assert e.split == "train" and e.targets == {"relevance": [0, 0, 0, 1.0]} and e.provenance["precedent"]
    assert ts.counts["precedents"] == 1


def test_a_teacher_run_on_another_rubric_is_refused_and_nothing_written():
    w = world(queries=6)
    other = published_version(w.surface, slug="other", rubric={"dimensions": [trec_relevance_dimension(), EXTRA]})
    good = teacher_run(w, "t1", relevant)
    foreign = teacher_run(w, "t2", relevant, version=other)
    with pytest.raises(DistillError, match=f"Teacher run {foreign.pk} .* judged rubric"):
        training_set_build(name="x", policy_version=w.version, teachers=[TeacherSource(good), TeacherSource(foreign)],
                           user=w.analyst)
    _nothing_written()


def test_no_sources_is_refused():
    w = world(queries=3)
    with pytest.raises(DistillError, match="at least one source"):
        training_set_build(name="x", policy_version=w.version, teachers=[], user=w.analyst)
    _nothing_written()


def test_an_empty_split_is_refused():
    w = world(queries=2)
    run = teacher_run(w, "t1", relevant)
    with pytest.raises(DistillError, match="split is empty"):
        training_set_build(name="x", policy_version=w.version, teachers=[TeacherSource(run)], user=w.analyst)
    _nothing_written()


def test_a_dimension_without_labels_is_refused():
    w = world(queries=6)
    two = published_version(w.surface, slug="two", rubric={"dimensions": [trec_relevance_dimension(), EXTRA]})
    run = teacher_run(w, "t1", relevant, version=two)
    # Its judgments lack the second dimension (as labels imported before the rubric had it would).
    from judges.models import Judgment

    for j in Judgment.objects.filter(run=run):
        j.labels = {"relevance": j.labels["relevance"]}
        j.save(update_fields=["labels"])
    with pytest.raises(DistillError, match="'freshness' has no label"):
        training_set_build(name="x", policy_version=two, teachers=[TeacherSource(run)], user=w.analyst)
    _nothing_written()
    ts = training_set_build(name="x", policy_version=two, teachers=[TeacherSource(run)], user=w.analyst,
                            dimensions=["relevance"])
    assert ts.counts["dimensions"] == [{"key": "relevance", "values": [0, 1, 2, 3]}]


@pytest.mark.parametrize("fractions, message", [
    ({"train": 0.8, "validation": 0.1}, "must name exactly"),
    ({"train": 0.8, "validation": 0.3, "test": 0.1}, "add up to 1"),
    ({"train": 1.0, "validation": 0.0, "test": 0.0}, "between 0 and 1"),
])
def test_bad_fractions_are_refused(fractions, message):
    w = world(queries=6)
    run = teacher_run(w, "t1", relevant)
    with pytest.raises(DistillError, match=message):
        training_set_build(name="x", policy_version=w.version, teachers=[TeacherSource(run)], user=w.analyst,
                           fractions=fractions)
    _nothing_written()


def test_a_reviewer_cannot_build_one(make_user):
    w = world(queries=6)
    run = teacher_run(w, "t1", relevant)
    with pytest.raises(DistillError, match="Only analysts"):
        training_set_build(name="x", policy_version=w.version, teachers=[TeacherSource(run)], user=make_user("reviewer"))
    _nothing_written()
