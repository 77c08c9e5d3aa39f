"""Vega-Lite specs of the model page, rendered by the vendored vega-embed like calibration/charts.py
(whose confusion heatmap is reused as is). Emitted with `json_script`, never interpolated."""

from __future__ import annotations

from typing import Any

from calibration.charts import SCHEMA, confusion_spec


def loss_spec(history: dict[str, Any]) -> dict[str, Any] | None:
    points = history.get("loss") or []
    if not points:
        return None
    return {"$schema": SCHEMA, "title": "Training loss", "width": "container", "height": 200,
            "data": {"values": points},
            "mark": {"type": "line", "point": len(points) < 40, "tooltip": True},
            "encoding": {"x": {"field": "step", "type": "quantitative", "title": "step"},
                         "y": {"field": "loss", "type": "quantitative", "title": "loss", "scale": {"zero": False}}}}


def validation_spec(history: dict[str, Any]) -> dict[str, Any] | None:
    rows = [{"epoch": v["epoch"], "dimension": k, "alpha": a} for v in history.get("val") or []
            for k, a in (v.get("alpha") or {}).items() if a is not None]
    if not rows:
        return None
    return {"$schema": SCHEMA, "title": "Validation Krippendorff's α (ordinal) per epoch", "width": "container",
            "height": 200, "data": {"values": rows},
            "mark": {"type": "line", "point": True, "tooltip": True},
            "encoding": {"x": {"field": "epoch", "type": "ordinal", "title": "epoch"},
                         "y": {"field": "alpha", "type": "quantitative", "title": "α", "scale": {"domain": [-0.2, 1]}},
                         "color": {"field": "dimension", "type": "nominal", "title": "dimension"}}}


def confusion_charts(evaluation) -> list[dict[str, Any]]:
    """Student (rows) against the human consensus (columns) per dimension, on the test items."""
    charts = []
    for key, entry in (evaluation.figures.get("dimensions") or {}).items():
        sh = entry["student_human"]
        if not sh.get("n"):
            continue
        charts.append({"id": f"confusion-{key}", "dimension": key,
                       "spec": confusion_spec(sh["confusion"], entry["values"], a="student", b="humans",
                                              title=f"{key}: student vs humans ({sh['n']} test items)")})
    return charts
