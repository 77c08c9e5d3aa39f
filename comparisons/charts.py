"""Vega-Lite specs of the comparison pages (rendered by the vendored vega-embed, as calibration's).

Specs are plain dicts emitted with `json_script`: metric and variant names stay data, never markup.
"""

from __future__ import annotations

from typing import Any

from calibration.charts import SCHEMA

VERDICT_COLOURS = {"domain": ["regression", "neutral", "improvement", "inconclusive"],
                   "range": ["#c62828", "#757575", "#2e7d32", "#f9a825"]}


def deltas_spec(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each metric's delta (treatment - control) with its 95% CI, judge-only and PPI, coloured by verdict."""
    points = []
    for row in rows:
        if row.get("delta") is None:
            continue
        points.append({"metric": row["name"], "estimate": "judge only", "delta": row["delta"], "low": row["ci_low"],
                       "high": row["ci_high"], "verdict": row["verdict"]})
        if row.get("ppi"):
            points.append({"metric": row["name"], "estimate": "PPI (human-calibrated)", "delta": row["ppi"]["estimate"],
                           "low": row["ppi"]["ci_low"], "high": row["ppi"]["ci_high"], "verdict": row["verdict"]})
    y = {"field": "metric", "type": "nominal", "title": None}
    return {
        "$schema": SCHEMA, "width": "container", "height": {"step": 34}, "data": {"values": points},
        "title": "Delta (treatment − control) with 95% CI",
        "encoding": {"y": y, "yOffset": {"field": "estimate"}},
        "layer": [
            {"mark": {"type": "rule", "strokeWidth": 2},
             "encoding": {"x": {"field": "low", "type": "quantitative", "title": "delta"}, "x2": {"field": "high"},
                          "color": {"field": "verdict", "type": "nominal", "scale": VERDICT_COLOURS}}},
            {"mark": {"type": "point", "filled": True, "size": 80},
             "encoding": {"x": {"field": "delta", "type": "quantitative"},
                          "shape": {"field": "estimate", "type": "nominal", "title": "estimate"},
                          "color": {"field": "verdict", "type": "nominal", "scale": VERDICT_COLOURS},
                          "tooltip": [{"field": "metric"}, {"field": "estimate"}, {"field": "delta", "format": ".4f"},
                                      {"field": "low", "format": ".4f", "title": "CI low"},
                                      {"field": "high", "format": ".4f", "title": "CI high"}, {"field": "verdict"}]}},
            {"mark": {"type": "rule", "strokeDash": [4, 4], "color": "#555"}, "encoding": {"x": {"datum": 0}}},
        ],
    }


def history_spec(points: list[dict[str, Any]]) -> dict[str, Any]:
    """A treatment's deltas over its comparisons (ramp steps), one line per metric, CI bars."""
    x = {"field": "label", "type": "ordinal", "sort": {"field": "order"}, "title": "comparison (ramp step)",
         "axis": {"labelAngle": -30, "labelLimit": 240}}
    return {
        "$schema": SCHEMA, "width": "container", "height": 260, "data": {"values": points},
        "title": "Deltas over the treatment's ramp steps (95% CI)",
        "layer": [
            {"mark": {"type": "rule", "strokeWidth": 2},
             "encoding": {"x": x, "y": {"field": "low", "type": "quantitative"}, "y2": {"field": "high"},
                          "color": {"field": "metric", "type": "nominal"}}},
            {"mark": {"type": "line", "point": {"filled": True, "size": 70}},
             "encoding": {"x": x, "y": {"field": "delta", "type": "quantitative", "title": "delta"},
                          "color": {"field": "metric", "type": "nominal"},
                          "tooltip": [{"field": "label"}, {"field": "metric"}, {"field": "delta", "format": ".4f"},
                                      {"field": "low", "format": ".4f"}, {"field": "high", "format": ".4f"},
                                      {"field": "verdict"}]}},
            {"mark": {"type": "rule", "strokeDash": [4, 4], "color": "#555"}, "encoding": {"y": {"datum": 0}}},
        ],
    }
