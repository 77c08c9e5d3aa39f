"""The gate's rules, from a comparison's verdicts to pass / regression / inconclusive / error."""

from gates.verdict import gate_outcome

THRESHOLDS = {"ndcg@10": -0.02, "precision@10": -0.03}


def _row(verdict: str, delta: float = 0.0) -> dict:
    return {"control": 0.5, "treatment": 0.5 + delta, "delta": delta, "ci_low": delta - 0.01, "ci_high": delta + 0.01,
            "p_value": 0.01, "verdict": verdict}


def _outcome(status="done", metrics=None, coverage=1.0, message=""):
    results = {"metrics": metrics or {}, "coverage": coverage, "queries": 50}
    return gate_outcome(comparison_status=status, comparison_message=message, results=results,
                        thresholds=THRESHOLDS, min_coverage=0.95)


def test_neutral_and_improvement_pass_with_exit_0():
    outcome = _outcome(metrics={"ndcg@10": _row("improvement", 0.05), "precision@10": _row("neutral")})
    assert (outcome.status, outcome.exit_code) == ("passed", 0)


def test_any_regression_fails_with_exit_1_and_names_delta_and_ci():
    outcome = _outcome(metrics={"ndcg@10": _row("regression", -0.08), "precision@10": _row("neutral")})
    assert (outcome.status, outcome.exit_code) == ("regression", 1)
    assert "ndcg@10 delta -0.0800" in outcome.message and "95% CI [-0.0900, -0.0700]" in outcome.message


def test_a_regression_outranks_an_undecided_metric():
    outcome = _outcome(metrics={"ndcg@10": _row("regression", -0.08), "precision@10": _row("inconclusive")})
    assert outcome.exit_code == 1


def test_an_undecided_metric_is_inconclusive_with_exit_2():
    outcome = _outcome(metrics={"ndcg@10": _row("neutral"), "precision@10": _row("inconclusive")})
    assert (outcome.status, outcome.exit_code) == ("inconclusive", 2)


def test_coverage_below_the_gates_bound_is_inconclusive():
    outcome = _outcome(metrics={"ndcg@10": _row("neutral"), "precision@10": _row("neutral")}, coverage=0.5)
    assert outcome.status == "inconclusive" and "50.0%" in outcome.message


def test_a_failed_comparison_is_an_error_with_its_reason():
    outcome = _outcome(status="failed", message="The judge run #3 failed: endpoint down")
    assert (outcome.status, outcome.exit_code) == ("error", 2) and "endpoint down" in outcome.message


def test_an_inconclusive_comparison_is_inconclusive():
    outcome = _outcome(status="inconclusive", message="Only 1 compared query")
    assert (outcome.status, outcome.exit_code) == ("inconclusive", 2)


def test_a_metric_the_comparison_did_not_compute_is_an_error():
    outcome = _outcome(metrics={"ndcg@10": _row("neutral")})
    assert outcome.status in ("error", "inconclusive") and outcome.exit_code == 2


def test_a_running_comparison_has_no_exit_code_yet():
    outcome = _outcome(status="judging")
    assert outcome.status == "running" and outcome.exit_code is None and not outcome.final
