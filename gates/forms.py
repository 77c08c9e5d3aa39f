from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib.auth import get_user_model
from django.utils import timezone

from judges.models import JudgeVersion
from policy.models import Surface
from traffic.models import Sample, Variant

from .models import Gate, Scope


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="what uses it, e.g. 'github-ci'")
    scopes = forms.MultipleChoiceField(choices=Scope.choices, widget=forms.CheckboxSelectMultiple,
                                       initial=[Scope.GATE_RUN])
    surface = forms.ModelChoiceField(queryset=Surface.objects.all(), required=False, empty_label="any surface",
                                     help_text="limit the token to one surface's gates and traffic")
    expires_in_days = forms.IntegerField(min_value=1, max_value=3650, initial=90, required=False,
                                         help_text="empty: never expires (revoke it when it is no longer used)")
    owner = forms.ModelChoiceField(queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
                                   required=False, empty_label="me", help_text="admins only: whose token it is")

    def __init__(self, *args, can_choose_owner: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not can_choose_owner:
            del self.fields["owner"]

    def expires_at(self):
        days = self.cleaned_data.get("expires_in_days")
        return timezone.now() + timedelta(days=days) if days else None


class MetricsField(forms.CharField):
    """One metric per line, 'name threshold' (e.g. 'ndcg@10 -0.02'), to the {name: threshold} a gate keeps."""

    widget = forms.Textarea(attrs={"rows": 3})

    def prepare_value(self, value):
        if isinstance(value, dict):
            return "\n".join(f"{name} {threshold:g}" for name, threshold in value.items())
        return value

    def to_python(self, value):
        text = super().to_python(value)
        metrics: dict[str, float] = {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                if len(parts) != 2:
                    raise ValueError
                metrics[parts[0]] = float(parts[1])
            except ValueError:
                raise forms.ValidationError(f"Line {number}: write 'metric threshold', e.g. 'ndcg@10 -0.02'.") from None
        if not metrics:
            raise forms.ValidationError("Name at least one metric with its threshold.")
        return metrics


class GateForm(forms.ModelForm):
    metrics = MetricsField(initial="ndcg@10 -0.02\nprecision@10 -0.03",
                           help_text="one per line: metric and the size of a change that matters (a significant drop "
                                     "at least this large is a regression)")

    class Meta:
        model = Gate
        fields = ["name", "description", "surface", "baseline", "judge_version", "k", "metrics", "alpha",
                  "sample_kind", "sample_size", "sample_seed", "sample", "min_coverage", "timeout_s"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["baseline"].queryset = Variant.objects.select_related("surface").order_by("surface__name", "name")
        self.fields["judge_version"].queryset = JudgeVersion.objects.select_related("judge").order_by("judge__name",
                                                                                                      "-number")
        self.fields["sample"].queryset = Sample.objects.order_by("-created_at")
        if self.instance.pk:
            self.fields["name"].disabled = True  # CI calls the gate by its name

    def validate_unique(self) -> None:
        pass  # the service reports a taken name, in one sentence


class RunForm(forms.Form):
    candidate = forms.ModelChoiceField(queryset=Variant.objects.none(), help_text="the variant to check")

    def __init__(self, *args, gate: Gate, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["candidate"].queryset = Variant.objects.filter(surface=gate.surface).exclude(pk=gate.baseline_id)
