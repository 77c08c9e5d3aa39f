"""A gate run's report as files CI understands: JSON, and JUnit XML (one testcase per metric).

JUnit is written with the standard library's ElementTree, in the schema every CI reads (Jenkins,
GitLab, GitHub test reporters): a regressed metric is a <failure> carrying its delta, CI and the
comparison's link; a metric that could not be decided — or every metric, when the whole run was
inconclusive or failed — an <error>. The tests read the files back with junitparser.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .verdict import describe_metric


def write_json(report: Mapping[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def _fmt(value: Any) -> str:
    return "—" if value is None else (f"{value:+.4f}" if isinstance(value, float) else str(value))


def junit_xml(report: Mapping[str, Any]) -> bytes:
    status = report.get("status")
    metrics: Mapping[str, Mapping[str, Any]] = report.get("metrics") or {}
    comparison_url = (report.get("comparison") or {}).get("url", "")
    suite_name = f"sage gate {report.get('gate')}: {report.get('candidate')} vs {report.get('baseline')}"
    suites = ET.Element("testsuites", name="sage-gate")
    suite = ET.SubElement(suites, "testsuite", name=suite_name)
    props = ET.SubElement(suite, "properties")
    for key in ("gate", "run", "surface", "baseline", "candidate", "status", "exit_code", "coverage", "queries",
                "judge_version", "url"):
        ET.SubElement(props, "property", name=key, value="" if report.get(key) is None else str(report.get(key)))
    ET.SubElement(props, "property", name="comparison_url", value=comparison_url)
    failures = errors = 0
    # A run that ended before any metric was computed still yields one testcase, so CI shows the reason.
    names = list(metrics) or ["gate"]
    for name in names:
        row = metrics.get(name, {})
        case = ET.SubElement(suite, "testcase", name=name, classname=f"sage.gate.{report.get('gate')}", time="0")
        verdict = row.get("verdict")
        detail = (f"{describe_metric(name, row)}\ncontrol {_fmt(row.get('control'))}, treatment "
                  f"{_fmt(row.get('treatment'))}, p {_fmt(row.get('p_value'))}, verdict {verdict}\n"
                  f"comparison: {comparison_url}")
        if verdict == "regression":
            failures += 1
            element = ET.SubElement(case, "failure", type="regression",
                                    message=f"{name} regressed: {describe_metric(name, row)} — {comparison_url}")
            element.text = detail
        elif status in ("inconclusive", "error") or verdict not in ("neutral", "improvement"):
            errors += 1
            element = ET.SubElement(case, "error", type=status if status in ("inconclusive", "error") else "inconclusive",
                                    message=f"{name}: {report.get('message') or 'no verdict'}")
            element.text = f"{report.get('message', '')}\n{detail}"
        else:
            out = ET.SubElement(case, "system-out")
            out.text = detail
    suite.set("tests", str(len(names)))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", "0")
    suites.set("tests", str(len(names)))
    suites.set("failures", str(failures))
    suites.set("errors", str(errors))
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True)


def write_junit(report: Mapping[str, Any], path: str | Path) -> None:
    Path(path).write_bytes(junit_xml(report))
