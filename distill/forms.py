from __future__ import annotations

import re

from django import forms

from judges.models import JudgeRun
from policy.models import PolicyVersion
from sage.params import IdsChoiceField

from .services import SPLITS, TRAINABLE_RUN_STATUSES

_NUMBER = re.compile(r"[0-9]{1,3}(\.[0-9]{1,4})?")


class TrainingSetForm(forms.Form):
    name = forms.CharField(max_length=120)
    policy_version = forms.ModelChoiceField(
        queryset=PolicyVersion.objects.filter(status="published").select_related("policy__surface"),
        help_text="the rubric the student learns; every teacher run must be on this rubric")
    runs = IdsChoiceField(
        queryset=JudgeRun.objects.filter(status__in=TRAINABLE_RUN_STATUSES)
        .select_related("judge_version__judge", "judge_version__policy_version__policy", "sample"),
        widget=forms.CheckboxSelectMultiple, label="Teacher runs",
        help_text="several teachers on the same items give a soft target: the distribution of their labels")
    include_precedents = forms.BooleanField(required=False, label="Add the policy's accepted precedents")
    precedent_weight = forms.FloatField(min_value=0.01, max_value=100, initial=1.0)
    include_human_labels = forms.BooleanField(required=False, label="Add human labels (the human consensus) of these items")
    human_weight = forms.FloatField(min_value=0.01, max_value=100, initial=1.0)
    humans_outrank_teachers = forms.BooleanField(required=False, initial=True,
                                                 label="Where humans labelled an item, their label is its target")
    seed = forms.IntegerField(min_value=0, max_value=2**31, initial=0)
    train = forms.FloatField(min_value=0.01, max_value=0.98, initial=0.7, label="Train fraction")
    validation = forms.FloatField(min_value=0.01, max_value=0.98, initial=0.15, label="Validation fraction")
    test = forms.FloatField(min_value=0.01, max_value=0.98, initial=0.15, label="Test fraction")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.run_choices = list(self.fields["runs"].queryset.order_by("-created_at")[:200])

    def run_rows(self) -> list[tuple]:
        """(run, weight as typed, checked) for the table of teacher runs; what was typed is kept on an error."""
        checked = set(self.data.getlist("runs")) if self.is_bound else set()
        return [(run, str(self.data.get(f"weight-{run.pk}", "1"))[:12] if self.is_bound else "1", str(run.pk) in checked)
                for run in self.run_choices]

    def clean(self):
        data = super().clean()
        weights = {}
        for run in data.get("runs") or []:
            raw = str(self.data.get(f"weight-{run.pk}", "1")).strip()
            if not _NUMBER.fullmatch(raw) or not (0 < float(raw) <= 100):
                self.add_error("runs", f"The weight of run {run.pk} must be a number above 0 and at most 100.")
                continue
            weights[run.pk] = float(raw)
        data["weights"] = weights
        if all(k in data for k in SPLITS):
            data["fractions"] = {k: data[k] for k in SPLITS}
        return data


class TrainForm(forms.Form):
    name = forms.CharField(max_length=120, required=False, help_text="blank: named after the training set")
    epochs = forms.IntegerField(min_value=1, max_value=50, initial=6)
    max_length = forms.IntegerField(min_value=16, max_value=512, initial=192, label="Max length (tokens)")
    batch_size = forms.IntegerField(min_value=1, max_value=256, initial=32)
    head = forms.ChoiceField(choices=[("coral", "ordinal (CORAL)"), ("classification", "classification")])
    base_model = forms.CharField(max_length=300, required=False,
                                 help_text="blank: the packaged MiniLM; or a local Hugging Face model folder")

    def overrides(self) -> dict:
        data = self.cleaned_data
        config = {k: data[k] for k in ("epochs", "max_length", "batch_size", "head")}
        if data.get("base_model"):
            config["base_model"] = data["base_model"]
        return config


class PromoteForm(forms.Form):
    override_reason = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}),
                                      label="Override reason (admins)",
                                      help_text="promote a student that misses the bar; recorded and shown wherever its labels are used")
