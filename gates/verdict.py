"""From a comparison's results to a gate's outcome: pure functions, no database.

    any metric the gate checks is a "regression"            → regression   (exit 1)
    every checked metric "neutral" or "improvement"          → passed       (exit 0)
    the comparison failed, was inconclusive, its coverage is
    under the gate's bound, or a checked metric is missing
    or "inconclusive"                                        → inconclusive (exit 2), or error (exit 2)

A regression outranks an inconclusive metric: a significant drop is a finding even when another
metric could not be decided, and CI should say "regression", not "try again".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PASSED, REGRESSION, INCONCLUSIVE, ERROR = "passed", "regression", "inconclusive", "error"
EXIT_CODES = {PASSED: 0, REGRESSION: 1, INCONCLUSIVE: 2, ERROR: 2}
FINAL_COMPARISON = {"done", "failed", "inconclusive"}


@dataclass(frozen=True)
class Outcome:
    status: str  # PASSED | REGRESSION | INCONCLUSIVE | ERROR, or "running" while the comparison works
    message: str
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def exit_code(self) -> int | None:
        return EXIT_CODES.get(self.status)

    @property
    def final(self) -> bool:
        return self.status in EXIT_CODES


def gate_outcome(*, comparison_status: str, comparison_message: str, results: Mapping[str, Any] | None,
                 thresholds: Mapping[str, float], min_coverage: float) -> Outcome:
    if comparison_status not in FINAL_COMPARISON:
        return Outcome("running", f"The comparison is {comparison_status}.")
    if comparison_status == "failed":
        return Outcome(ERROR, f"The comparison failed: {comparison_message or 'no reason given'}")
    results = results or {}
    by_metric: Mapping[str, Any] = results.get("metrics") or {}
    metrics: dict[str, dict[str, Any]] = {}
    for name, threshold in thresholds.items():
        row = dict(by_metric.get(name) or {})
        row.setdefault("verdict", "inconclusive" if by_metric else None)
        row.setdefault("threshold", threshold)
        metrics[name] = row
    regressions = sorted(n for n, r in metrics.items() if r.get("verdict") == "regression")
    if regressions:
        shown = "; ".join(_describe(n, metrics[n]) for n in regressions)
        return Outcome(REGRESSION, f"Regression on {len(regressions)} of {len(metrics)} metric(s): {shown}.", metrics)
    if comparison_status == "inconclusive":
        return Outcome(INCONCLUSIVE, f"The comparison was inconclusive: {comparison_message or 'no reason given'}",
                       metrics)
    coverage = results.get("coverage")
    if coverage is None or coverage < min_coverage:
        shown = "unknown" if coverage is None else f"{coverage:.1%}"
        return Outcome(INCONCLUSIVE, f"Only {shown} of the top-k results were judged; the gate needs "
                                     f"{min_coverage:.0%} to decide.", metrics)
    missing = sorted(n for n, r in metrics.items() if "delta" not in r)
    if missing:
        return Outcome(ERROR, f"The comparison has no result for {', '.join(missing)}.", metrics)
    undecided = sorted(n for n, r in metrics.items() if r.get("verdict") not in ("neutral", "improvement"))
    if undecided:
        return Outcome(INCONCLUSIVE, f"No verdict on {', '.join(undecided)}: "
                                     + "; ".join(_describe(n, metrics[n]) for n in undecided) + ".", metrics)
    return Outcome(PASSED, f"No regression on {len(metrics)} metric(s).", metrics)


def _describe(name: str, row: Mapping[str, Any]) -> str:
    parts = [name]
    if row.get("delta") is not None:
        parts.append(f"delta {row['delta']:+.4f}")
    if row.get("ci_low") is not None and row.get("ci_high") is not None:
        parts.append(f"95% CI [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]")
    if row.get("threshold") is not None:
        parts.append(f"threshold {abs(row['threshold']):.4f}")
    return " ".join(parts)


def describe_metric(name: str, row: Mapping[str, Any]) -> str:
    return _describe(name, row)
