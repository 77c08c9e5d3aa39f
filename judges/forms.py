from __future__ import annotations

from django import forms
from django.conf import settings

from distill.models import StudentModel
from policy.models import PolicyVersion, Surface
from traffic.models import Sample

from .core.backends import BACKENDS, BackendSpec, backend_choices, backends_where
from .models import JudgeVersion
from .selectors import promoted_students

# Which backends use a field, by capability (the registry decides; no backend is named here). The
# page shows a field only while the chosen backend uses it (judges/static/judges/backend_fields.js);
# fields not listed are used by every backend.
FIELD_USERS = {
    "model_name": lambda spec: not spec.uses_student,
    "student_model": lambda spec: spec.uses_student,
    "endpoint_name": lambda spec: spec.needs_endpoint,
    "requests_per_minute": lambda spec: spec.needs_endpoint,
    "tokens_per_minute": lambda spec: spec.needs_endpoint,
    "temperature": lambda spec: spec.prompt_based,
    "max_tokens": lambda spec: spec.prompt_based,
    "precedent_k": lambda spec: spec.prompt_based,
    "doc_char_budget": lambda spec: spec.prompt_based,
    "price_in_per_m": lambda spec: spec.pricing == "tokens",
    "price_out_per_m": lambda spec: spec.pricing == "tokens",
    "price_per_1k": lambda spec: spec.pricing == "per_1k",
    "concurrency": lambda spec: spec.needs_endpoint,
}


class StudentChoiceField(forms.ModelChoiceField):
    """Promoted students; one promoted by an admin's override says so, with the reason."""

    def __init__(self, *args, **kwargs) -> None:
        self.decisions: dict[int, list] = {}
        super().__init__(*args, **kwargs)

    def label_from_instance(self, obj) -> str:
        parts = []
        for surface, decision in self.decisions.get(obj.pk, []):
            parts.append(f"override on {surface}: {decision.reason}" if decision.override else f"promoted on {surface}")
        return f"{obj.name} ({'; '.join(parts)})" if parts else obj.name


class JudgeVersionForm(forms.Form):
    backend = forms.ChoiceField(choices=backend_choices)
    student_model = StudentChoiceField(queryset=StudentModel.objects.none(), required=False, label="Student model",
                                       help_text="students promoted on the judge's surface")
    model_name = forms.CharField(max_length=200, initial="local", required=False)
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
    price_per_1k = forms.DecimalField(min_value=0, max_digits=12, decimal_places=4, required=False,
                                      label="USD / 1,000 judgments", help_text="what these labels cost where they were made")

    def __init__(self, *args, surface: Surface | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["endpoint_name"].choices = [("", "—")] + [(n, n) for n in settings.SAGE_JUDGE_ENDPOINTS]
        self._student_choices(surface)
        for name, uses in FIELD_USERS.items():
            self.fields[name].backends = " ".join(spec.name for spec in BACKENDS.values() if uses(spec))

    def _student_choices(self, surface: Surface | None) -> None:
        field = self.fields["student_model"]
        field.decisions = {}  # this form's own: a field's copy shares the class field's attributes
        if not backends_where(uses_student=True):
            return
        for student, on, decision in promoted_students(surface):
            field.decisions.setdefault(student.pk, []).append((on, decision))
        field.queryset = StudentModel.objects.filter(pk__in=list(field.decisions)).order_by("name")

    def clean(self) -> dict:
        data = super().clean()
        spec: BackendSpec | None = BACKENDS.get(data.get("backend", ""))
        if spec is None:
            return data
        if spec.uses_student and not data.get("student_model"):
            self.add_error("student_model", "Pick a promoted student model.")
        if not spec.uses_student and not data.get("model_name"):
            self.add_error("model_name", "Name the model.")
        return data

    @staticmethod
    def initial_from(version: JudgeVersion) -> dict:
        return {name: getattr(version, name) for name in (
            "backend", "model_name", "endpoint_name", "policy_version", "temperature", "max_tokens", "precedent_k",
            "doc_char_budget", "concurrency", "requests_per_minute", "tokens_per_minute", "price_in_per_m",
            "price_out_per_m", "price_per_1k", "student_model")}


class JudgeCreateForm(JudgeVersionForm):
    name = forms.CharField(max_length=120)
    surface = forms.ModelChoiceField(queryset=Surface.objects.all())
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    field_order = ["name", "surface", "description"]


class RunStartForm(forms.Form):
    version = forms.ModelChoiceField(queryset=JudgeVersion.objects.none(), label="Judge version")
    sample = forms.ModelChoiceField(queryset=Sample.objects.all())
    bypass_cache = forms.BooleanField(required=False, help_text="judge every item again even when a cached judgment matches")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Versions of a backend with a model to run (imported labels have none).
        self.fields["version"].queryset = (JudgeVersion.objects.filter(backend__in=backends_where(has_model=True))
                                           .select_related("judge"))
