from django.contrib import admin

from .models import AgreementSnapshot, Disagreement, GoldLabeller, TriageDecision


@admin.register(AgreementSnapshot)
class AgreementSnapshotAdmin(admin.ModelAdmin):
    list_display = ("run", "dimension", "n", "computed_at")


@admin.register(Disagreement)
class DisagreementAdmin(admin.ModelAdmin):
    list_display = ("id", "run", "dimension", "judge_value", "human_value", "distance", "status")
    list_filter = ("status", "dimension")
    raw_id_fields = ("run", "item", "judgment")


@admin.register(TriageDecision)
class TriageDecisionAdmin(admin.ModelAdmin):
    list_display = ("disagreement", "resolution", "clause", "decided_by", "decided_at")
    list_filter = ("resolution",)
    raw_id_fields = ("disagreement", "precedent", "policy_draft", "corrected_label")


@admin.register(GoldLabeller)
class GoldLabellerAdmin(admin.ModelAdmin):
    list_display = ("user", "note", "added_by", "added_at")
    raw_id_fields = ("user", "added_by")
