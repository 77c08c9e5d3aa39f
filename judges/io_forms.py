"""The judge page's upload of labels produced elsewhere (an imported judge's runs)."""

from __future__ import annotations

from django import forms

from traffic.models import Sample

from .io import FORMATS, FieldMapping
from .models import Judge
from .services import JudgeError


class JudgmentImportForm(forms.Form):
    sample = forms.ModelChoiceField(queryset=Sample.objects.none(), help_text="every item of it needs one line")
    file = forms.FileField(required=False, help_text="JSONL, CSV or TREC qrels, UTF-8")
    format = forms.ChoiceField(required=False, choices=[("", "from the file name")] + [(f, f) for f in FORMATS])
    label_fields = forms.CharField(
        required=False, label="Label fields", widget=forms.Textarea(attrs={"rows": 2, "placeholder": "relevance=score"}),
        help_text="one dimension=column per line, when the file's names differ from SAGE's "
                  "(JSONL: a top-level field or a key of 'labels'; CSV: a column)")
    query_field = forms.CharField(required=False, max_length=100, help_text="default query_id")
    doc_field = forms.CharField(required=False, max_length=100, help_text="default doc_id")
    skip_unmatched = forms.BooleanField(required=False, label="Skip lines for items outside the sample")
    dry_run = forms.BooleanField(required=False, initial=True, label="Dry run: check every line, import nothing")
    # Set by the dry run's confirm button: the upload it checked, kept server-side.
    upload = forms.CharField(required=False, widget=forms.HiddenInput, max_length=100)

    def __init__(self, *args, judge: Judge, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.judge = judge
        self.fields["sample"].queryset = Sample.objects.filter(surface_id=judge.surface_id).order_by("-created_at")

    def clean(self):
        data = super().clean()
        if not data.get("file") and not data.get("upload"):
            self.add_error("file", "Choose a file.")
        version = self.judge.latest_version()
        if version is not None and not self.errors:
            try:
                data["mapping"] = FieldMapping.parse(
                    label_fields=(data.get("label_fields") or "").splitlines(), query_field=data.get("query_field", ""),
                    doc_field=data.get("doc_field", ""), rubric=version.policy_version.parsed_rubric())
            except JudgeError as exc:
                self.add_error("label_fields", str(exc))
        return data
