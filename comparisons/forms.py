from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model

from judges.models import JudgeVersion
from sage.params import IdsChoiceField
from sage.roles import Role
from traffic.models import Variant


class VariantChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Variant) -> str:
        return f"{obj.surface.name} · {obj.name} ({obj.get_role_display().lower()}, ramp {obj.ramp_percent:g}%)"


class ComparisonForm(forms.Form):
    name = forms.CharField(max_length=120, required=False)
    control = VariantChoiceField(queryset=Variant.objects.select_related("surface").order_by("surface__name", "name"))
    treatment = VariantChoiceField(queryset=Variant.objects.select_related("surface").order_by("surface__name", "name"))
    judge_version = forms.ModelChoiceField(
        queryset=JudgeVersion.objects.select_related("judge").order_by("judge__name", "-number"), label="Judge version")
    k = forms.IntegerField(min_value=1, max_value=100, initial=10)
    metrics = forms.MultipleChoiceField(
        choices=[("ndcg@k", "nDCG@k"), ("mean_relevance@k", "mean relevance@k"), ("precision@k", "precision@k")],
        initial=["ndcg@k", "mean_relevance@k", "precision@k"], widget=forms.CheckboxSelectMultiple, required=False)
    defect_dimensions = forms.CharField(required=False, max_length=400,
                                        help_text="rubric dimensions for a defect rate@k, comma separated (e.g. safety)")
    queries = forms.IntegerField(min_value=2, max_value=1_000_000, required=False,
                                 help_text="a random number of the shared queries; empty: all of them")
    seed = forms.IntegerField(min_value=0, max_value=2**31 - 1, initial=1)
    alpha = forms.FloatField(min_value=0.001, max_value=0.2, initial=0.05, label="Significance level")
    threshold = forms.FloatField(min_value=0, max_value=1, required=False,
                                 help_text="the delta that matters for every metric; empty: the defaults per metric")

    def metric_names(self) -> list[str]:
        names = list(self.cleaned_data.get("metrics") or [])
        for raw in (self.cleaned_data.get("defect_dimensions") or "").split(","):
            if raw.strip():
                names.append(f"defect_rate@k:{raw.strip()}")
        return names


class ReviewSliceForm(forms.Form):
    queries = forms.IntegerField(min_value=3, max_value=100_000, initial=5)
    seed = forms.IntegerField(min_value=0, max_value=2**31 - 1, initial=1)
    overlap = forms.IntegerField(min_value=1, max_value=10, initial=1)
    reviewers = IdsChoiceField(queryset=get_user_model().objects.none())

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["reviewers"].queryset = (
            get_user_model().objects.filter(is_active=True)
            .filter(groups__name__in=[Role.REVIEWER.value, Role.ADMIN.value]).distinct().order_by("username"))
