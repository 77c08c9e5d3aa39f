"""The PostgreSQL fast path of the calibration selectors (joins and grouping in SQL, binary COPY into
numpy) against the portable ORM + numpy path, on a small synthetic set: results must be identical."""

from __future__ import annotations

from io import StringIO
from unittest import mock

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from calibration import selectors
from judges.models import JudgeRun, Judgment
from judges.services import judge_create
from review.models import HumanLabel
from tests.factories import UserFactory, published_version, traffic_surface
from traffic.models import Document, Item, Query, Sample, SampleItem

N_ITEMS, N_QUERIES = 2000, 40
EXTRA = {"key": "freshness", "name": "Freshness", "description": "Is it current?",
         "levels": [{"value": v, "label": f"F{v}", "definition": f"Freshness {v}."} for v in range(3)]}

needs_postgres = pytest.mark.skipif(connection.vendor != "postgresql",
                                    reason="the SQL fast path is PostgreSQL only; SQLite always takes the portable path")


def portable():
    return mock.patch.object(selectors, "use_sql_path", return_value=False)


def make_run(surface, version, analyst, sample, items, name, labels_of):
    judge_version = judge_create(name=name, surface=surface, user=analyst, backend="imported", model_name=name,
                                 policy_version=version, precedent_k=0)
    run = JudgeRun.objects.create(judge_version=judge_version, sample=sample, status=JudgeRun.Status.SUCCEEDED,
                                  total_items=N_ITEMS)
    rows = []
    for k, item in enumerate(items):
        labels = labels_of(k)
        rows.append(Judgment(run=run, item=item, status="ok" if labels else "error", labels=labels,
                             judge_version=judge_version, policy_version=version, rubric_hash=version.rubric_hash,
                             item_hash=item.hash, cache_key=f"{name}-{k}"))
    Judgment.objects.bulk_create(rows, batch_size=1000)
    return run


@pytest.fixture
def synthetic(db):
    """2,000 items over 40 queries; a judge run with errors and a dimension some judgments lack; 0-3
    latest human labels per item (even counts exercise the lower median), superseded revisions and
    labels on items outside the run."""
    rng = np.random.default_rng(7)
    analyst = UserFactory(username="scale-analyst", roles=["analyst"])
    reviewers = [UserFactory(username=f"scale-reviewer-{r}", roles=["reviewer"]) for r in range(3)]
    surface = traffic_surface("scale", variants=(("control", "control"),))
    version = published_version(surface, extra_dimensions=(EXTRA,))
    queries = Query.objects.bulk_create([Query(text=f"q{q}", text_hash=f"qh{q}") for q in range(N_QUERIES)])
    docs = Document.objects.bulk_create([Document(content_hash=f"dh{k}", body=f"d{k}") for k in range(N_ITEMS + 50)])
    items = Item.objects.bulk_create([Item(hash=f"ih{k}", query=queries[(k * 7) % N_QUERIES], document=docs[k])
                                      for k in range(N_ITEMS + 50)])
    sample = Sample.objects.create(name="scale", surface=surface, strategy="synthetic", seed=0, item_count=N_ITEMS)
    SampleItem.objects.bulk_create([SampleItem(sample=sample, item=items[k], position=k) for k in range(N_ITEMS)])

    truth = rng.integers(0, 4, N_ITEMS + 50)
    judge = np.clip(truth + rng.integers(-1, 2, N_ITEMS + 50), 0, 3)
    fresh = rng.integers(0, 3, N_ITEMS + 50)

    def judge_labels(k):
        if k % 97 == 0:
            return None  # an error judgment
        return {"relevance": int(judge[k]), **({"freshness": int(fresh[k])} if k % 5 else {})}

    run = make_run(surface, version, analyst, sample, items[:N_ITEMS], "scale-judge", judge_labels)
    other = make_run(surface, version, analyst, sample, items[:N_ITEMS], "scale-judge-2",
                     lambda k: None if k % 31 == 0 else {"relevance": int(truth[k]), "freshness": int((fresh[k] + k) % 3)})

    labels = []
    for k, item in enumerate(items):
        for r in range(int(rng.integers(0, 4))):
            value = int(np.clip(truth[k] + rng.integers(-1, 2), 0, 3))
            common = dict(item=item, reviewer=reviewers[r], policy_version=version, rubric_hash=version.rubric_hash)
            if k % 11 == 0:  # a superseded revision that must be ignored
                labels.append(HumanLabel(**common, labels={"relevance": 3 - value}, revision=1, is_latest=False))
                labels.append(HumanLabel(**common, labels={"relevance": value}, revision=2))
            else:
                labels.append(HumanLabel(**common, labels={"relevance": value, **({"freshness": int(fresh[k])} if k % 3 else {})}))
    HumanLabel.objects.bulk_create(labels, batch_size=1000)
    return {"run": run, "other": other, "items": items, "reviewers": reviewers}


def same(x, y):
    assert [r.as_dict() for r in x] == [r.as_dict() for r in y]
    assert [r.extra for r in x] == [r.extra for r in y]


@needs_postgres
def test_sql_and_portable_agreement_are_identical(synthetic):
    run = synthetic["run"]
    fast = selectors.agreement_run_vs_humans(run, n_resamples=300)
    with portable():
        slow = selectors.agreement_run_vs_humans(run, n_resamples=300)
    same(fast, slow)
    assert [r.dimension for r in fast] == ["relevance", "freshness"]
    assert 1000 < fast[0].n < N_ITEMS and fast[0].n_queries == N_QUERIES and fast[0].ci["kappa"] is not None
    assert fast[1].n < fast[0].n  # fewer items carry the second dimension on both sides


@needs_postgres
def test_sql_and_portable_agree_on_a_subset_and_one_dimension(synthetic):
    run, items = synthetic["run"], synthetic["items"]
    subset = [i.pk for i in items[::3]] + [items[-1].pk]  # the last item is outside the run
    for kwargs in ({"item_ids": subset}, {"item_ids": []}, {"dimensions": ["freshness"]}):
        fast = selectors.agreement_run_vs_humans(run, n_resamples=200, **kwargs)
        with portable():
            slow = selectors.agreement_run_vs_humans(run, n_resamples=200, **kwargs)
        same(fast, slow)
    assert selectors.agreement_run_vs_humans(run, item_ids=[])[0].reason == "no items labelled by both"


@needs_postgres
def test_sql_and_portable_run_vs_run_are_identical(synthetic):
    fast = selectors.agreement_run_vs_run(synthetic["run"], synthetic["other"], n_resamples=200)
    with portable():
        slow = selectors.agreement_run_vs_run(synthetic["run"], synthetic["other"], n_resamples=200)
    same(fast, slow)
    assert len(fast) == 2


@needs_postgres
def test_sql_and_portable_array_loaders_are_identical(synthetic):
    run, items, reviewers = synthetic["run"], synthetic["items"], synthetic["reviewers"]
    some = np.array([i.pk for i in items[5::4]], dtype=np.int64)[::-1]  # unsorted on purpose
    calls = [
        lambda: selectors.run_labels(run, "relevance"),
        lambda: selectors.run_labels(run, "freshness"),
        lambda: selectors.human_consensus(None, "relevance"),
        lambda: selectors.human_consensus(some, "freshness"),
        lambda: selectors.human_consensus(some.tolist(), "relevance", reviewer_ids=[reviewers[0].pk, reviewers[2].pk]),
        lambda: selectors.human_consensus(None, "relevance", exclude_reviewers=[reviewers[1].pk]),
        lambda: selectors.human_consensus([], "relevance"),
        lambda: (selectors.query_ids_for(some),),
        lambda: (selectors.query_ids_for(np.zeros(0, dtype=np.int64)),),
    ]
    for call in calls:
        fast = call()
        with portable():
            slow = call()
        assert len(fast) == len(slow)
        for f, s in zip(fast, slow):
            assert f.dtype == s.dtype == np.int64 and np.array_equal(f, s)
    items_, consensus, counts = selectors.human_consensus(None, "relevance")
    assert counts.max() == 3 and (counts == 2).any()  # the lower median was exercised


def test_portable_path_runs_everywhere(synthetic):
    with portable():
        [relevance, freshness] = selectors.agreement_run_vs_humans(synthetic["run"], n_resamples=100)
    assert relevance.n > freshness.n > 0 and sum(map(sum, relevance.confusion)) == relevance.n


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_synthetic_command_creates_a_run_and_refuses_twice():
    out = StringIO()
    call_command("calibration_synthetic", judgments=2000, queries=40, humans_per_item=2, human_fraction=0.25,
                 name="cmdtest", no_progress=True, stdout=out)
    run = JudgeRun.objects.get(judge_version__judge__name="cmdtest-judge")
    assert run.status == JudgeRun.Status.SUCCEEDED and run.judgments.count() == 2000
    assert HumanLabel.objects.filter(item__sample_items__sample=run.sample).count() == 1000
    [relevance] = selectors.agreement_run_vs_humans(run, n_resamples=200)
    with portable():
        [slow] = selectors.agreement_run_vs_humans(run, n_resamples=200)
    assert relevance.as_dict() == slow.as_dict()
    assert relevance.n == 500 and relevance.n_queries == 40 and 0.3 < relevance.estimates["kappa"] < 0.95
    with pytest.raises(CommandError, match="exists already"):
        call_command("calibration_synthetic", judgments=2000, queries=40, name="cmdtest", no_progress=True)
    call_command("calibration_synthetic", judgments=2000, queries=40, name="cmdtest", reuse=True, stdout=out)
    assert f"run {run.pk} exists already" in out.getvalue()


@pytest.mark.skipif(connection.vendor == "postgresql", reason="checks the refusal on SQLite")
@pytest.mark.django_db
def test_synthetic_command_refuses_sqlite():
    with pytest.raises(CommandError, match="needs PostgreSQL"):
        call_command("calibration_synthetic", judgments=10, queries=2, no_progress=True)
