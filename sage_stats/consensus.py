"""The human consensus of an item — one rule for every judge-vs-human figure, disagreement, precedent
and sample that needs "what the humans said".

The rule, over the latest label of each labeller on the item:

1. If any of those labellers is a *gold* labeller (e.g. the NIST assessor whose labels define the
   benchmark), only the gold labels count.
2. The consensus is the median of the labels that count. With an even number of them the median is
   halfway between the two middle labels; a halfway value rounds down: floor((low + high) / 2).

Why not the lower median (SAGE's rule before): with two labels the lower median is just the smaller
one, so a single fresh reviewer's 0 outvoted the NIST assessor's 3 and the item read "humans said 0".
The midpoint lets neither label win alone (0 and 3 → 1); rounding the halfway case down keeps the
conservative call where two adjacent labels tie (1 and 2 → 1), as before.

The database path in calibration/selectors.py computes the same thing in SQL
(floor(percentile_cont(0.5))); tests/calibration/test_consensus.py checks both against this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CONSENSUS_RULE = ("median of the latest label of each labeller; halfway between two middle labels rounds down; "
                  "where a gold labeller labelled the item, only gold labels count")


def consensus_of(values: Sequence[int], gold: Sequence[bool] | None = None) -> int | None:
    """The consensus of one item's labels (one per labeller); None when there is none."""
    _, consensus, _ = consensus_by_item(np.zeros(len(values), dtype=np.int64), values, gold)
    return int(consensus[0]) if consensus.size else None


def consensus_by_item(item_ids: Sequence[int] | np.ndarray, values: Sequence[int] | np.ndarray,
                      gold: Sequence[bool] | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item ids ascending, consensus label, number of labels counted) from one row per (item, labeller).

    `gold[i]` says whether row i's labeller is a gold labeller.
    """
    items = np.asarray(item_ids, dtype=np.int64).reshape(-1)
    vals = np.asarray(values, dtype=np.int64).reshape(-1)
    if items.shape != vals.shape:
        raise ValueError("item ids and values differ in length")
    if items.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    if gold is not None:
        is_gold = np.asarray(gold, dtype=bool).reshape(-1)
        _, inverse = np.unique(items, return_inverse=True)
        item_has_gold = np.bincount(inverse, weights=is_gold.astype(float)) > 0
        keep = is_gold | ~item_has_gold[inverse]
        items, vals = items[keep], vals[keep]
    order = np.lexsort((vals, items))
    items, vals = items[order], vals[order]
    unique, starts, counts = np.unique(items, return_index=True, return_counts=True)
    low = vals[starts + (counts - 1) // 2]
    high = vals[starts + counts // 2]
    # Integer floor division is floor((low + high) / 2) for negative scales too.
    return unique, (low + high) // 2, counts.astype(np.int64)
