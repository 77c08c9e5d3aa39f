from __future__ import annotations

from django import forms
from django.conf import settings

from policy.models import PolicyVersion, Surface
from traffic.models import Sample

from .models import JudgeVersion


class JudgeVersionForm(forms.Form):
    backend = forms.ChoiceField(choices=[("openai", "OpenAI-compatible endpoint"), ("imported", "Imported labels")])
    model_name = forms.CharField(max_length=200, initial="local")
    endpoint_name = forms.ChoiceField(required=False, help_text="configured in the environment; URL and key never stored")
    policy_version = forms.ModelChoiceField(queryset=PolicyVersion.objects.filter(status="published").select_related("policy"))
    temperature = forms.FloatField(min_value=0, max_value=2, initial=0)
    max_tokens = forms.IntegerField(min_value=16, max_value=8192, initial=400)
    precedent_k = forms.IntegerField(min_value=0, max_value=20, initial=4, label="Precedents per prompt (k)")
    doc_char_budget = forms.IntegerField(min_value=200, max_value=100_000, initial=4000, label="Document budget (characters)")
    concurrency = forms.IntegerField(min_value=1, max_value=256, initial=16)
    requests_per_minute = forms.IntegerField(min_value=1, required=False)
    tokens_per_minute = forms.IntegerField(min_value=1, required=False)
    price_in_per_m = forms.DecimalField(min_value=0, max_digits=10, decimal_places=4, initial=0, label="USD / 1M input tokens")
    price_out_per_m = forms.DecimalField(min_value=0, max_digits=10, decimal_places=4, initial=0, label="USD / 1M output tokens")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["endpoint_name"].choices = [("", "—")] + [(n, n) for n in settings.SAGE_JUDGE_ENDPOINTS]

    @staticmethod
    def initial_from(version: JudgeVersion) -> dict:
        return {name: getattr(version, name) for name in (
            "backend", "model_name", "endpoint_name", "policy_version", "temperature", "max_tokens", "precedent_k",
            "doc_char_budget", "concurrency", "requests_per_minute", "tokens_per_minute", "price_in_per_m",
            "price_out_per_m")}


class JudgeCreateForm(JudgeVersionForm):
    name = forms.CharField(max_length=120)
    surface = forms.ModelChoiceField(queryset=Surface.objects.all())
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    field_order = ["name", "surface", "description"]


class RunStartForm(forms.Form):
    version = forms.ModelChoiceField(queryset=JudgeVersion.objects.exclude(backend="imported").select_related("judge"),
                                     label="Judge version")
    sample = forms.ModelChoiceField(queryset=Sample.objects.all())
    bypass_cache = forms.BooleanField(required=False, help_text="judge every item again even when a cached judgment matches")
