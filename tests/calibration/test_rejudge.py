"""Re-judging after triage: a new judge version under the latest policy, reusing unchanged prompts."""

import io
import json

import pytest
from django.contrib.auth.models import Group

from calibration.models import Disagreement
from calibration.dashboard import disagreement_diff
from calibration.services import calibration_rejudge, disagreements_refresh
from judges.services import judge_run_start
from review.services import human_label_import
from tests.judges.helpers import judge_setup
from tests.policy_factories import publish_next

pytestmark = pytest.mark.django_db


def test_rejudge_uses_the_latest_policy_and_compares(fault_endpoint, finish_run, django_capture_on_commit_callbacks, make_user):
    version, sample, analyst = judge_setup(queries=2, depth=3)
    analyst.groups.add(Group.objects.get(name="reviewer"))
    items = [si.item for si in sample.sample_items.all()]
    lines = b"".join(json.dumps({"reviewer": "nist", "item": i.hash, "labels": {"relevance": 0}}).encode() + b"\n" for i in items)
    human_label_import(source=io.BytesIO(lines), policy_version=version.policy_version, user=analyst)
    with django_capture_on_commit_callbacks(execute=False):
        first = judge_run_start(version=version, sample=sample, user=analyst)
    first = finish_run(first)
    with django_capture_on_commit_callbacks(execute=False):
        same = calibration_rejudge(run=first, user=analyst)
    same = finish_run(same)
    assert same.judge_version == version and same.cached_items == len(items) and same.cost == 0

    v2 = publish_next(version.policy_version, text=version.policy_version.text + "\n## Clarified\n\nMore words.\n")
    with django_capture_on_commit_callbacks(execute=False):
        again = calibration_rejudge(run=first, user=analyst)
    again = finish_run(again)
    assert again.judge_version.number == 2 and again.judge_version.policy_version == v2
    assert again.cached_items == 0 and again.done_items == len(items)
    diff = disagreement_diff(old=first, new=again)
    assert {"fixed", "introduced", "still", "no_judgment"} <= set(diff)
    assert not Disagreement.objects.exists()  # a read: only the triage POST fills the queue
    disagreements_refresh(run=first)
    disagreements_refresh(run=again)
    before = set(Disagreement.objects.filter(run=first).values_list("item_id", "dimension"))
    after = set(Disagreement.objects.filter(run=again).values_list("item_id", "dimension"))
    assert set(diff["fixed"]) | set(diff["still"]) | set(diff["no_judgment"]) == before
    assert set(diff["introduced"]) | set(diff["still"]) == after
