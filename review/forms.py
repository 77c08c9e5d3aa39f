from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model

from policy.models import PolicyVersion
from sage.params import IdsChoiceField
from sage.roles import Role
from traffic.models import Sample


class QueueForm(forms.Form):
    name = forms.CharField(max_length=120)
    sample = forms.ModelChoiceField(queryset=Sample.objects.all())
    policy_version = forms.ModelChoiceField(
        queryset=PolicyVersion.objects.filter(status=PolicyVersion.Status.PUBLISHED).select_related("policy"))
    reviewers = IdsChoiceField(queryset=get_user_model().objects.none())
    overlap = forms.IntegerField(min_value=1, max_value=10, initial=2, help_text="labels per item; 2+ for agreement")
    instructions = forms.CharField(required=False, max_length=10_000, widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        User = get_user_model()
        self.fields["reviewers"].queryset = (
            User.objects.filter(is_active=True)
            .filter(groups__name__in=[Role.REVIEWER.value, Role.ADMIN.value]).distinct().order_by("username"))


class LabelImportForm(forms.Form):
    policy_version = forms.ModelChoiceField(
        queryset=PolicyVersion.objects.filter(status=PolicyVersion.Status.PUBLISHED).select_related("policy"))
    file = forms.FileField(help_text="JSONL: one label per line")
    default_assessor = forms.CharField(
        required=False, max_length=150, label="Assessor for lines without one",
        help_text="an external assessor name, e.g. nist; never a reviewer's username")
    dry_run = forms.BooleanField(required=False, initial=True, label="Dry run: check every line, import nothing")
