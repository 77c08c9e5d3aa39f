"""Agreement functions against hand-checkable cases, and their degenerate cases."""

import math

import numpy as np
import pytest

from sage_stats import krippendorff_alpha, pairwise_agreement


def test_perfect_agreement_is_one_everywhere():
    r = pairwise_agreement([0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 3])
    assert r["n"] == 4 and r["exact"] == 1.0
    assert r["kappa"] == r["kappa_linear"] == r["kappa_quadratic"] == pytest.approx(1.0)


def test_cohen_kappa_by_hand():
    # 2x2 table [[2, 1], [0, 1]]: po = 3/4, pe = (3/4)(2/4) + (1/4)(2/4) = 1/2, kappa = (3/4 - 1/2)/(1/2) = 1/2
    r = pairwise_agreement([0, 0, 0, 1], [0, 0, 1, 1], [0, 1])
    assert r["exact"] == 0.75 and r["kappa"] == pytest.approx(0.5)


def test_weighted_kappa_penalises_far_disagreements_more():
    near = pairwise_agreement([0, 1, 2, 3, 0, 3], [1, 1, 2, 3, 0, 3], [0, 1, 2, 3])
    far = pairwise_agreement([0, 1, 2, 3, 0, 3], [3, 1, 2, 3, 0, 3], [0, 1, 2, 3])
    assert near["exact"] == far["exact"]
    assert near["kappa_quadratic"] > far["kappa_quadratic"] and near["kappa_linear"] > far["kappa_linear"]


def test_degenerate_cases_return_none_with_a_reason():
    assert pairwise_agreement([], [], [0, 1])["reason"] == "no items labelled by both"
    one = pairwise_agreement([1], [1], [0, 1])
    assert one["kappa"] is None and one["exact"] == 1.0 and "two items" in one["reason"]
    same = pairwise_agreement([2, 2, 2], [2, 2, 2], [0, 1, 2, 3])
    assert same["kappa"] is None and "same class" in same["reason"]


def test_krippendorff_alpha_by_hand():
    # Two coders, nominal, 4 units: [a, a, b, b] vs [a, b, b, b]. Coincidences: o_aa=2, o_ab=o_ba=1, o_bb=4;
    # n=8, n_a=3, n_b=5: D_o = 2/8, D_e = 2*3*5/(8*7) = 30/56; alpha = 1 - (2/8)/(30/56) = 1 - 14/30 = 8/15.
    r = krippendorff_alpha([[0, 0, 1, 1], [0, 1, 1, 1]], [0, 1], level="nominal")
    assert r["alpha"] == pytest.approx(8 / 15) and r["n_items"] == 4


def test_krippendorff_alpha_skips_units_with_one_label_and_handles_degenerate_data():
    with_gaps = krippendorff_alpha([[0, 1, 2, np.nan], [0, 1, 3, 2]], [0, 1, 2, 3])
    assert with_gaps["n_items"] == 3 and with_gaps["alpha"] is not None and not math.isnan(with_gaps["alpha"])
    assert krippendorff_alpha([[1, np.nan], [1, 2]], [0, 1, 2])["alpha"] is None
    flat = krippendorff_alpha([[1, 1, 1], [1, 1, 1]], [0, 1, 2])
    assert flat["alpha"] is None and "same class" in flat["reason"]
    assert krippendorff_alpha(np.empty((0, 0)), [0, 1])["reason"]


def test_matches_sklearn_and_krippendorff_on_real_data_when_present():
    import json
    from pathlib import Path

    import krippendorff
    from sklearn.metrics import cohen_kappa_score

    path = Path(__file__).resolve().parents[2] / "demo" / "trec-dl-2023"
    labels = {(r["query_id"], r["doc_id"]): r["label"] for r in map(json.loads, (path / "judgments.jsonl").open())}
    runs = [json.loads(line) for line in (path / "published_llm_labels.jsonl").open()]
    human = [labels[(r["query_id"], r["doc_id"])] for r in runs]
    judge = [r["labels"]["h2oloo-fewself"] for r in runs]
    ours = pairwise_agreement(human, judge, [0, 1, 2, 3])
    assert ours["kappa_linear"] == pytest.approx(cohen_kappa_score(human, judge, labels=[0, 1, 2, 3], weights="linear"), abs=1e-9)
    alpha = krippendorff_alpha([human, judge], [0, 1, 2, 3])["alpha"]
    assert alpha == pytest.approx(krippendorff.alpha(reliability_data=[human, judge], value_domain=[0, 1, 2, 3],
                                                     level_of_measurement="ordinal"), abs=1e-9)
