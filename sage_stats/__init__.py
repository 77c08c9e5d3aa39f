"""SAGE's statistics: agreement between labellers, query-cluster bootstrap intervals and the human
consensus rule, as pure functions over numpy arrays.

This package imports no Django (tests/calibration/test_stats_module.py checks it), so every app —
review, calibration, distillation, variant comparison — imports it downward and none owns it. The
point estimates come from scikit-learn and `krippendorff`; intervals from `scipy.stats.bootstrap`.
"""

from .agreement import (
    MIN_QUERIES_FOR_CI,
    STATISTICS,
    DimensionAgreement,
    bootstrap_ci,
    confusion_by_group,
    dimension_agreement,
    krippendorff_alpha,
    pairwise_agreement,
    statistics_from_confusion,
)
from .consensus import CONSENSUS_RULE, consensus_by_item, consensus_of

__all__ = [
    "CONSENSUS_RULE",
    "MIN_QUERIES_FOR_CI",
    "STATISTICS",
    "DimensionAgreement",
    "bootstrap_ci",
    "confusion_by_group",
    "consensus_by_item",
    "consensus_of",
    "dimension_agreement",
    "krippendorff_alpha",
    "pairwise_agreement",
    "statistics_from_confusion",
]
