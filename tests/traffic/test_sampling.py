"""Every strategy is reproducible: same traffic snapshot, params and seed → the same items in order."""

import pytest

from traffic.models import Item, ResultEntry
from traffic.sampling import STRATEGIES, draw_item_ids, traffic_snapshot
from traffic.selectors import sample_item_ids
from traffic.services import TrafficError, sample_draw
from tests.factories import import_traffic_rows, ranked_traffic, traffic_row, traffic_surface

pytestmark = pytest.mark.django_db

PARAMS = {
    "uniform": {"size": 7},
    "stratified": {"size": 8},
    "top_k": {"k": 3, "queries": 3},
    "union_top_k": {"k": 3, "control": "control", "treatment": "treatment", "queries": 3},
}


def test_every_registered_strategy_has_a_test_case():
    # "disagreement" is registered by the calibration app and tested in tests/calibration/test_disagreement_sampling.py.
    assert set(PARAMS) | {"disagreement"} == set(STRATEGIES)


@pytest.mark.parametrize("strategy", sorted(PARAMS))
def test_the_same_seed_draws_the_same_items_even_after_more_traffic(strategy, analyst):
    surface = traffic_surface()
    ranked_traffic(surface, queries=6, depth=5)
    first = sample_draw(surface=surface, name="a", strategy=strategy, params=PARAMS[strategy], seed=42, user=analyst)
    import_traffic_rows(surface, [traffic_row(query=f"late {i}", rank=1, doc_id=f"late{i}", body=f"late {i}")
                                  for i in range(20)], filename="late.jsonl")
    redraw = draw_item_ids(surface=surface, strategy=strategy, params=PARAMS[strategy], seed=42,
                           snapshot=first.snapshot)
    assert redraw == sample_item_ids(sample=first)
    assert first.item_count == len(redraw) > 0
    assert not Item.objects.filter(pk__in=redraw, query__text__startswith="late").exists()


@pytest.mark.parametrize("strategy", ["uniform", "stratified", "top_k", "union_top_k"])
def test_another_seed_draws_another_sample(strategy):
    surface = traffic_surface()
    ranked_traffic(surface, queries=8, depth=5)
    snapshot = traffic_snapshot(surface=surface)
    draws = {tuple(draw_item_ids(surface=surface, strategy=strategy, params=PARAMS[strategy], seed=s,
                                 snapshot=snapshot)) for s in range(5)}
    assert len(draws) > 1


def test_stratified_allocates_proportionally_to_segments():
    surface = traffic_surface()
    # 3 head queries, 1 tail query, 8 distinct items each (depth 5, 2 shared).
    import_traffic_rows(surface, [traffic_row(variant=v, query=f"q{q}", rank=r, doc_id=f"q{q}-{v}-{r}", body=f"{q}{v}{r}",
                                              segment="tail" if q == 3 else "head")
                                  for q in range(4) for v in ("control", "treatment") for r in range(1, 5)])
    ids = draw_item_ids(surface=surface, strategy="stratified", params={"size": 8}, seed=3,
                        snapshot=traffic_snapshot(surface=surface))
    segments = list(Item.objects.filter(pk__in=ids).values_list("query__segment", flat=True))
    assert segments.count("head") == 6 and segments.count("tail") == 2


def test_top_k_takes_only_positions_up_to_k():
    surface = traffic_surface()
    ranked_traffic(surface, queries=2, depth=6)
    ids = draw_item_ids(surface=surface, strategy="top_k", params={"k": 2, "variants": ["treatment"]}, seed=1,
                        snapshot=traffic_snapshot(surface=surface))
    ranks = ResultEntry.objects.filter(item_id__in=ids, variant__name="treatment").values_list("rank", flat=True)
    assert len(ids) == 4 and set(ranks) <= {1, 2}


def test_union_top_k_unions_both_lists_for_shared_queries():
    surface = traffic_surface()
    ranked_traffic(surface, queries=2, depth=4, shared=2)
    import_traffic_rows(surface, [traffic_row(variant="control", query="control only", rank=1, doc_id="co")],
                        filename="c.jsonl")
    ids = draw_item_ids(surface=surface, strategy="union_top_k",
                        params={"k": 3, "control": "control", "treatment": "treatment"}, seed=1,
                        snapshot=traffic_snapshot(surface=surface))
    # Per query: 2 shared + control's 3rd + treatment's 3rd; the control-only query is left out.
    assert len(ids) == 8
    assert not Item.objects.filter(pk__in=ids, query__text="control only").exists()


def test_bad_params_are_refused(analyst):
    surface = traffic_surface()
    ranked_traffic(surface)
    with pytest.raises(TrafficError, match="unknown variant"):
        sample_draw(surface=surface, name="x", strategy="union_top_k",
                    params={"k": 3, "control": "control", "treatment": "nope"}, seed=1, user=analyst)
    with pytest.raises(TrafficError, match="Unknown sampling strategy"):
        sample_draw(surface=surface, name="x", strategy="no-such-strategy", params={}, seed=1, user=analyst)


def test_only_analysts_draw_samples(reviewer):
    surface = traffic_surface()
    ranked_traffic(surface)
    with pytest.raises(TrafficError, match="Only analysts"):
        sample_draw(surface=surface, name="x", strategy="uniform", params={"size": 2}, seed=1, user=reviewer)
