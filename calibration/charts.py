"""Vega-Lite specs for the calibration pages, rendered in the browser by vega-embed (served locally).

Specs are plain dicts; templates emit them with `json_script`, so labels from the data (judge names,
segments) are JSON-encoded and never interpolated into HTML or JavaScript.
"""

from __future__ import annotations

from typing import Any

SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"
METRIC_TITLES = {"exact": "exact agreement", "kappa": "Cohen's κ", "kappa_linear": "linear-weighted κ",
                 "kappa_quadratic": "quadratic-weighted κ", "alpha": "Krippendorff's α (ordinal)"}


def trend_spec(points: list[dict[str, Any]], *, metric: str, ceiling: float | None) -> dict[str, Any]:
    """Agreement per run in policy-version order, with 95% CI bars, coloured by judge."""
    y = {"field": "value", "type": "quantitative", "title": METRIC_TITLES[metric], "scale": {"domain": [-0.2, 1]}}
    x = {"field": "label", "type": "ordinal", "sort": {"field": "order"}, "title": "run (policy version · judge)",
         "axis": {"labelAngle": -30, "labelLimit": 220}}
    layers: list[dict[str, Any]] = [
        {"mark": {"type": "rule", "strokeWidth": 2},
         "encoding": {"x": x, "y": {"field": "low", "type": "quantitative"}, "y2": {"field": "high"},
                      "color": {"field": "judge", "type": "nominal", "title": "judge"}}},
        {"mark": {"type": "point", "filled": True, "size": 90},
         "encoding": {"x": x, "y": y, "color": {"field": "judge", "type": "nominal"},
                      "shape": {"field": "policy", "type": "nominal", "title": "policy version"},
                      "tooltip": [{"field": "label"}, {"field": "value", "format": ".3f"},
                                  {"field": "low", "format": ".3f", "title": "CI low"},
                                  {"field": "high", "format": ".3f", "title": "CI high"}, {"field": "n"},
                                  {"field": "queries", "title": "queries (CI)"}]}},
    ]
    if ceiling is not None:
        layers.append({"mark": {"type": "rule", "strokeDash": [6, 4], "color": "#555"},
                       "encoding": {"y": {"datum": ceiling}}})
        layers.append({"mark": {"type": "text", "align": "left", "dx": 4, "dy": -6, "color": "#555"},
                       "encoding": {"y": {"datum": ceiling}, "x": {"value": 0}, "text": {"value": "human–human ceiling"}}})
    return {"$schema": SCHEMA, "width": "container", "height": 260, "data": {"values": points}, "layer": layers,
            "title": f"Judge vs human agreement ({METRIC_TITLES[metric]}, 95% CI resampling queries)"}


def confusion_spec(confusion: list[list[int]], values: list[int], *, a: str, b: str, title: str) -> dict[str, Any]:
    cells = [{"a": va, "b": vb, "count": confusion[i][j]} for i, va in enumerate(values) for j, vb in enumerate(values)]
    enc_x = {"field": "b", "type": "ordinal", "title": b}
    enc_y = {"field": "a", "type": "ordinal", "title": a, "sort": "descending"}
    return {
        "$schema": SCHEMA, "title": title, "width": 220, "height": 220, "data": {"values": cells},
        "layer": [
            {"mark": {"type": "rect", "cursor": "pointer"},
             "encoding": {"x": enc_x, "y": enc_y, "color": {"field": "count", "type": "quantitative",
                                                             "scale": {"scheme": "blues"}, "legend": None},
                          "tooltip": [{"field": "a", "title": a}, {"field": "b", "title": b}, {"field": "count"}]}},
            {"mark": {"type": "text", "fontSize": 13, "color": "#111"},
             "encoding": {"x": enc_x, "y": enc_y, "text": {"field": "count"}}},
        ],
    }


def segment_spec(rows: list[dict[str, Any]], *, metric: str) -> dict[str, Any]:
    x = {"field": "segment", "type": "nominal", "title": "query segment"}
    return {
        "$schema": SCHEMA, "title": f"{METRIC_TITLES[metric]} by query segment", "width": "container", "height": 200,
        "data": {"values": rows},
        "layer": [
            {"mark": {"type": "bar", "opacity": 0.7}, "encoding": {
                "x": x, "y": {"field": "value", "type": "quantitative", "title": METRIC_TITLES[metric]},
                "tooltip": [{"field": "segment"}, {"field": "value", "format": ".3f"}, {"field": "n"},
                            {"field": "queries", "title": "queries (CI)"}]}},
            {"mark": {"type": "rule"}, "encoding": {"x": x, "y": {"field": "low", "type": "quantitative"},
                                                    "y2": {"field": "high"}}},
        ],
    }
