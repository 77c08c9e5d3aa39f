"""manage.py sage_gate: exit codes 0 / 1 / 2 on real comparisons, and the JSON and JUnit reports
(read back with junitparser, an independent parser)."""

import json

import pytest
from django.core.management import CommandError, call_command
from junitparser import Error, Failure, JUnitXml

from gates.models import GateRun
from gates.services import gate_update
from tests.gates.helpers import gate_world, traffic_file

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    return gate_world()


def _gate(name, candidate, tmp_path, *extra) -> tuple[int, dict, JUnitXml]:
    json_out, junit_out = tmp_path / f"{candidate}.json", tmp_path / f"{candidate}.xml"
    try:
        call_command("sage_gate", name, "--candidate", candidate, "--json", str(json_out), "--junit", str(junit_out),
                     "--poll", "0.05", *extra)
        code = 0
    except CommandError as exc:
        code = exc.returncode
    report = json.loads(json_out.read_text()) if json_out.exists() else {}
    junit = JUnitXml.fromfile(str(junit_out)) if junit_out.exists() else None
    return code, report, junit


def _cases(junit: JUnitXml) -> dict:
    return {case.name: case for suite in junit for case in suite}


def test_a_better_candidate_passes_with_exit_0(world, tmp_path):
    gate, _ = world
    code, report, junit = _gate(gate.name, "better", tmp_path)
    assert code == 0 and report["status"] == "passed"
    assert report["metrics"]["ndcg@5"]["verdict"] == "improvement"
    cases = _cases(junit)
    assert set(cases) == {"ndcg@5", "precision@5"}
    assert all(case.is_passed for case in cases.values())
    assert GateRun.objects.get().exit_code == 0


def test_an_unchanged_candidate_passes_as_neutral(world, tmp_path):
    gate, _ = world
    code, report, _junit = _gate(gate.name, "same", tmp_path)
    assert code == 0 and {m["verdict"] for m in report["metrics"].values()} == {"neutral"}


def test_a_worse_candidate_is_a_regression_with_exit_1_and_junit_failures(world, tmp_path):
    gate, _ = world
    code, report, junit = _gate(gate.name, "worse", tmp_path)
    assert code == 1 and report["status"] == "regression" and report["exit_code"] == 1
    case = _cases(junit)["ndcg@5"]
    (failure,) = case.result
    assert isinstance(failure, Failure) and failure.type == "regression"
    delta = report["metrics"]["ndcg@5"]["delta"]
    assert f"delta {delta:+.4f}" in failure.message and "95% CI [" in failure.message
    assert f"/comparisons/{report['comparison']['id']}/" in failure.message
    suite = next(iter(junit))
    assert suite.failures == 2 and suite.errors == 0 and suite.tests == 2


def test_unjudged_results_make_the_gate_inconclusive_with_exit_2_and_junit_errors(world, tmp_path):
    gate, _ = world
    traffic = tmp_path / "unjudged.jsonl"
    traffic.write_bytes(traffic_file("unjudged", ["x0", "x1", "x2", "x3", "x4"]))
    code, report, junit = _gate(gate.name, "unjudged", tmp_path, "--traffic", str(traffic))
    assert code == 2 and report["status"] == "inconclusive", report
    assert report["coverage"] == pytest.approx(0.5)
    for case in _cases(junit).values():
        (error,) = case.result
        assert isinstance(error, Error) and error.type == "inconclusive"


def test_an_unknown_candidate_is_an_error_with_exit_2_and_no_run(world, tmp_path):
    gate, _ = world
    code, report, junit = _gate(gate.name, "ghost", tmp_path)
    assert code == 2 and not GateRun.objects.exists()
    assert report["status"] == "error" and "no variant 'ghost'" in report["message"]
    (case,) = _cases(junit).values()
    assert isinstance(case.result[0], Error) and "ghost" in case.result[0].message


def test_an_unknown_gate_is_an_error_with_exit_2(world, tmp_path):
    assert _gate("no-such-gate", "better", tmp_path)[0] == 2


def test_a_run_still_judging_at_the_timeout_ends_as_an_error_with_exit_2(world, tmp_path, fault_endpoint):
    """An endpoint judge whose run no worker picks up (the on-commit queueing never fires in this test)."""
    from judges.services import judge_create

    gate, analyst = world
    judge = judge_create(name="endpoint judge", surface=gate.surface, user=analyst, backend="openai",
                         model_name="test-model", endpoint_name="fault", precedent_k=0,
                         policy_version=gate.judge_version.policy_version)
    gate_update(gate=gate, user=analyst, judge_version=judge)
    code, report, junit = _gate(gate.name, "worse", tmp_path, "--timeout", "0.3")
    assert code == 2 and report["status"] == "error" and "Timed out" in report["message"]
    assert GateRun.objects.get().status == "error"
    (case,) = _cases(junit).values()
    assert isinstance(case.result[0], Error) and case.result[0].type == "error"


def test_a_failed_comparison_is_an_error_with_exit_2_and_a_retried_job_follows_the_same_run(world, tmp_path,
                                                                                          fault_endpoint):
    """The judge run behind the comparison is cancelled; a CI job retried with the same client key follows
    the run it started rather than starting another, and reports the error."""
    from gates.services import gate_run_start
    from judges.services import judge_create, judge_run_cancel

    gate, analyst = world
    judge = judge_create(name="endpoint judge", surface=gate.surface, user=analyst, backend="openai",
                         model_name="test-model", endpoint_name="fault", precedent_k=0,
                         policy_version=gate.judge_version.policy_version)
    gate_update(gate=gate, user=analyst, judge_version=judge)
    run = gate_run_start(gate=gate, candidate="worse", user=analyst, source="command", client_key="job-7").run
    judge_run_cancel(run=run.comparison.judge_run, user=analyst)
    code, report, junit = _gate(gate.name, "worse", tmp_path, "--client-key", "job-7")
    assert code == 2 and report["status"] == "error" and "Cancelled" in report["message"], report
    assert GateRun.objects.count() == 1 and report["run"] == run.pk
