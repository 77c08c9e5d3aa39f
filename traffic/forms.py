from __future__ import annotations

from typing import Any

from django import forms

from policy.models import Surface

from .models import Variant
from .sampling import STRATEGIES

# Which form fields each strategy reads; anything else is left out of the sample's params.
STRATEGY_PARAMS: dict[str, tuple[str, ...]] = {
    "uniform": ("size", "variants"),
    "stratified": ("size", "allocation", "variants"),
    "top_k": ("k", "queries", "variants"),
    "union_top_k": ("k", "queries", "control", "treatment"),
    "disagreement": ("size", "runs"),  # registered by the calibration app
}


class VariantForm(forms.Form):
    surface = forms.ModelChoiceField(queryset=Surface.objects.all())
    name = forms.SlugField(max_length=60)
    role = forms.ChoiceField(choices=Variant.Role.choices)
    ramp_percent = forms.DecimalField(min_value=0, max_value=100, decimal_places=2, initial=0)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}), max_length=5000)


class UploadForm(forms.Form):
    surface = forms.ModelChoiceField(queryset=Surface.objects.all())
    file = forms.FileField(help_text="JSONL (.jsonl) or CSV (.csv) with a header row")


class SampleForm(forms.Form):
    surface = forms.ModelChoiceField(queryset=Surface.objects.all())
    name = forms.CharField(max_length=120)
    strategy = forms.ChoiceField(choices=[])
    seed = forms.IntegerField(initial=1, min_value=0, max_value=2**62)
    size = forms.IntegerField(required=False, min_value=1, max_value=1_000_000, help_text="uniform, stratified")
    k = forms.IntegerField(required=False, min_value=1, max_value=1000, help_text="top-k strategies")
    queries = forms.IntegerField(required=False, min_value=1, help_text="draw this many queries (top-k); blank: all")
    allocation = forms.ChoiceField(required=False, choices=[("proportional", "proportional"), ("equal", "equal")])
    variants = forms.CharField(required=False, help_text="comma-separated variant names; blank: all")
    control = forms.CharField(required=False, max_length=60)
    treatment = forms.CharField(required=False, max_length=60)
    runs = forms.CharField(required=False, help_text="disagreement: comma-separated judge run ids")
    include_flagged = forms.BooleanField(
        required=False, label="Include every flagged item",
        help_text="add every item whose result looks addressed to the judge (prompt injection), so review sees them")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["strategy"].choices = [(s.key, s.label) for s in STRATEGIES.values()]

    def params(self) -> dict[str, Any]:
        data = self.cleaned_data
        params: dict[str, Any] = {}
        for key in STRATEGY_PARAMS.get(data["strategy"], ()):
            value = data.get(key)
            if value in (None, ""):
                continue
            if key in ("variants", "runs"):
                value = [v.strip() for v in value.split(",") if v.strip()]
            params[key] = value
        if data.get("include_flagged"):
            params["include_flagged"] = True
        return params
