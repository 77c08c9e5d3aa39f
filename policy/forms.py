"""The rubric editor's form: flat POST fields <-> rubric JSON, plus add/remove operations.

Fields: `dim-count`; per dimension i: `dim-i-key|name|description|weight`, `dim-i-level-count`;
per level j: `dim-i-level-j-value|label|definition`; the radio `overall` holds the overall index.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.http import QueryDict

from .models import Surface

MAX_FORM_DIMENSIONS = 12
MAX_FORM_LEVELS = 11


def _count(data: QueryDict, name: str, limit: int) -> int:
    try:
        return max(0, min(int(data.get(name, 0)), limit))
    except (TypeError, ValueError):
        return 0


def rubric_from_post(data: QueryDict) -> dict[str, Any]:
    dims = []
    overall = data.get("overall")
    for i in range(_count(data, "dim-count", MAX_FORM_DIMENSIONS)):
        p = f"dim-{i}-"
        levels = [
            {"value": data.get(f"{p}level-{j}-value", "").strip(), "label": data.get(f"{p}level-{j}-label", ""),
             "definition": data.get(f"{p}level-{j}-definition", "")}
            for j in range(_count(data, f"{p}level-count", MAX_FORM_LEVELS))
        ]
        dims.append({
            "key": data.get(f"{p}key", "").strip(), "name": data.get(f"{p}name", ""),
            "description": data.get(f"{p}description", ""), "weight": data.get(f"{p}weight", "").strip() or None,
            "overall": overall == str(i), "levels": levels,
        })
    return {"dimensions": dims}


def rubric_apply_op(rubric: dict[str, Any], op: str) -> dict[str, Any]:
    """add-dim | remove-dim-I | add-level-I | remove-level-I-J, on an unvalidated rubric dict."""
    dims = rubric["dimensions"]
    if op == "add-dim" and len(dims) < MAX_FORM_DIMENSIONS:
        dims.append({"key": "", "name": "", "description": "", "weight": None, "overall": not dims,
                     "levels": [{"value": 0, "label": "", "definition": ""}, {"value": 1, "label": "", "definition": ""}]})
    elif m := re.fullmatch(r"remove-dim-(\d+)", op):
        i = int(m[1])
        if i < len(dims):
            dims.pop(i)
    elif m := re.fullmatch(r"add-level-(\d+)", op):
        i = int(m[1])
        if i < len(dims) and len(dims[i]["levels"]) < MAX_FORM_LEVELS:
            values = [int(lv["value"]) for lv in dims[i]["levels"] if str(lv["value"]).lstrip("-").isdigit()]
            dims[i]["levels"].append({"value": max(values, default=-1) + 1, "label": "", "definition": ""})
    elif m := re.fullmatch(r"remove-level-(\d+)-(\d+)", op):
        i, j = int(m[1]), int(m[2])
        if i < len(dims) and j < len(dims[i]["levels"]):
            dims[i]["levels"].pop(j)
    return rubric


def rubric_rows(rubric: dict[str, Any], errors: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    """The rubric as template rows, each field carrying its own error messages."""
    errors = errors or {}
    rows = []
    for i, dim in enumerate(rubric.get("dimensions", [])):
        p = f"dimensions[{i}]"
        rows.append({
            "index": i, **{k: dim.get(k) for k in ("key", "name", "description", "weight", "overall")},
            "errors": {f: errors.get(f"{p}.{f}", []) for f in ("key", "name", "description", "weight")},
            "level_errors": errors.get(f"{p}.levels", []) + errors.get(p, []),
            "levels": [
                {"index": j, **lv, "errors": {f: errors.get(f"{p}.levels[{j}].{f}", []) + (errors.get(f"{p}.levels[{j}]", []) if f == "value" else [])
                                              for f in ("value", "label", "definition")}}
                for j, lv in enumerate(dim.get("levels", []))
            ],
        })
    return rows


class PolicyCreateForm(forms.Form):
    surface = forms.ModelChoiceField(queryset=Surface.objects.all(), required=False,
                                     help_text="the search product this policy governs")
    new_surface = forms.CharField(max_length=120, required=False, label="…or a new surface")
    name = forms.CharField(max_length=120)
    slug = forms.SlugField(max_length=60, help_text="short id, e.g. 'relevance'")

    def clean(self):
        data = super().clean()
        if not data.get("surface") and not data.get("new_surface"):
            raise forms.ValidationError("Choose a surface or name a new one.")
        return data
