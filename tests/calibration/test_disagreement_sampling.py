import pytest

from tests.calibration.helpers import calibrated_run
from traffic.services import TrafficError, sample_draw

pytestmark = pytest.mark.django_db


def test_it_samples_the_items_judge_and_humans_disagree_on_most():
    run, items, analyst = calibrated_run(judge_labels=[3, 0, 2, 1], human_labels=[[0, 0, 2, 3]])
    sample = sample_draw(surface=run.sample.surface, name="hard ones", strategy="disagreement",
                         params={"size": 10, "runs": [run.pk]}, seed=5, user=analyst)
    chosen = list(sample.sample_items.order_by("position").values_list("item_id", flat=True))
    assert chosen == [items[0].pk, items[3].pk]  # distance 3, then 2; agreeing items are left out
    again = sample_draw(surface=run.sample.surface, name="again", strategy="disagreement",
                        params={"size": 10, "runs": [run.pk]}, seed=5, user=analyst)
    assert list(again.sample_items.order_by("position").values_list("item_id", flat=True)) == chosen


def test_it_needs_the_runs_named():
    run, items, analyst = calibrated_run(judge_labels=[3, 0], human_labels=[[0, 0]])
    with pytest.raises(TrafficError, match="runs must list"):
        sample_draw(surface=run.sample.surface, name="x", strategy="disagreement", params={"size": 5}, seed=1,
                    user=analyst)
