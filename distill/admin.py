from django.contrib import admin

from .models import (PromotionBar, PromotionDecision, StudentEvaluation, StudentModel, TrainingExample, TrainingSet,
                     TrainingSetSource)


class ReadOnly(admin.ModelAdmin):
    """Frozen records: made by the services (training sets, decisions), never edited by hand."""

    def has_change_permission(self, request, obj=None):
        return obj is None

    def has_add_permission(self, request):
        return False


@admin.register(TrainingSet)
class TrainingSetAdmin(ReadOnly):
    list_display = ("name", "version", "surface", "policy_version", "content_hash", "created_at")


@admin.register(TrainingSetSource)
class TrainingSetSourceAdmin(ReadOnly):
    list_display = ("training_set", "kind", "judge_run", "weight", "examples")


@admin.register(TrainingExample)
class TrainingExampleAdmin(ReadOnly):
    list_display = ("training_set", "split", "query_key", "labels", "weight")
    list_filter = ("split",)


@admin.register(StudentModel)
class StudentModelAdmin(ReadOnly):
    list_display = ("name", "training_set", "status", "step", "steps_total", "model_hash", "created_at")
    list_filter = ("status",)


@admin.register(StudentEvaluation)
class StudentEvaluationAdmin(ReadOnly):
    list_display = ("student", "model_hash", "seconds_per_1k", "created_at")


@admin.register(PromotionDecision)
class PromotionDecisionAdmin(ReadOnly):
    list_display = ("student", "surface", "promoted", "override", "decided_by", "decided_at")


@admin.register(PromotionBar)
class PromotionBarAdmin(admin.ModelAdmin):
    """The per-surface promotion bar is the one thing here an admin sets by hand."""

    list_display = ("surface", "metric", "ratio", "updated_by", "updated_at")

    def save_model(self, request, obj, form, change):
        obj.updated_by = request.user
        super().save_model(request, obj, form, change)
