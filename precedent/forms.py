from __future__ import annotations

import json

from django import forms

from policy.models import Policy, PolicyVersion

from .services import PrecedentData


class PrecedentForm(forms.Form):
    """Content fields, plus one choice field per rubric dimension of the reference version."""

    query = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))
    title = forms.CharField(required=False, max_length=500)
    url = forms.CharField(required=False, max_length=2000, label="URL")
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}), label="Result text")
    rationale = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))
    clause = forms.ChoiceField(required=False, help_text="the policy clause this precedent illustrates")
    tags = forms.CharField(required=False, help_text="comma-separated")
    metadata = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}), help_text="JSON object")

    def __init__(self, *args, version: PolicyVersion, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.version = version
        self.fields["clause"].choices = [("", "—")] + [(c.anchor, f"§{c.anchor} {c.title}") for c in version.clauses.all()]
        for dim in version.parsed_rubric().dimensions:
            self.fields[f"label_{dim.key}"] = forms.TypedChoiceField(
                label=dim.name + ("" if dim.overall else " (optional)"), coerce=int, widget=forms.RadioSelect,
                required=dim.overall, empty_value=None,
                choices=[(lv.value, f"{lv.value} · {lv.label}") for lv in dim.levels],
                help_text=dim.description,
            )

    def clean_metadata(self):
        raw = self.cleaned_data.get("metadata") or ""
        if not raw.strip():
            return {}
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("Must be a JSON object.")
        return value

    def to_data(self) -> PrecedentData:
        d = self.cleaned_data
        return PrecedentData(
            query=d["query"], title=d.get("title", ""), url=d.get("url", ""), body=d["body"],
            rationale=d["rationale"], clause=d.get("clause", ""), metadata=d.get("metadata") or {},
            tags=[t.strip() for t in (d.get("tags") or "").split(",") if t.strip()],
            labels={dim.key: d[f"label_{dim.key}"] for dim in self.version.parsed_rubric().dimensions
                    if d.get(f"label_{dim.key}") is not None},
        )

    @staticmethod
    def initial_from(precedent) -> dict:
        initial = {f: getattr(precedent, f) for f in ("query", "title", "url", "body", "rationale", "clause")}
        initial["tags"] = ", ".join(precedent.tags)
        initial["metadata"] = json.dumps(precedent.metadata) if precedent.metadata else ""
        initial.update({f"label_{k}": v for k, v in precedent.labels.items()})
        return initial


class ImportForm(forms.Form):
    policy = forms.ModelChoiceField(queryset=Policy.objects.all())
    file = forms.FileField(help_text="JSONL or CSV, UTF-8")
    dry_run = forms.BooleanField(required=False, initial=True, label="Dry run: check every row, import nothing")

    def file_format(self) -> str:
        name = self.cleaned_data["file"].name.lower()
        return "csv" if name.endswith(".csv") else "jsonl"
