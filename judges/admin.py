from django.contrib import admin

from .models import InjectionCheck, Judge, JudgeRun, JudgeVersion, Judgment


@admin.register(Judge)
class JudgeAdmin(admin.ModelAdmin):
    list_display = ("name", "surface", "created_at")


@admin.register(JudgeVersion)
class JudgeVersionAdmin(admin.ModelAdmin):
    list_display = ("judge", "number", "backend", "model_name", "endpoint_name", "policy_version", "created_at")
    list_filter = ("backend",)

    def has_change_permission(self, request, obj=None):
        return obj is None  # immutable: edit the judge to make a new version


@admin.register(JudgeRun)
class JudgeRunAdmin(admin.ModelAdmin):
    list_display = ("id", "judge_version", "sample", "status", "done_items", "total_items", "error_items", "cost")
    list_filter = ("status",)


@admin.register(Judgment)
class JudgmentAdmin(admin.ModelAdmin):
    list_display = ("id", "run", "item", "status", "error_kind", "latency_ms", "cost")
    list_filter = ("status", "error_kind")
    raw_id_fields = ("run", "item", "cached_from")


@admin.register(InjectionCheck)
class InjectionCheckAdmin(admin.ModelAdmin):
    list_display = ("id", "judge_version", "status", "n", "rose", "mean_delta", "created_at")
    list_filter = ("status",)
    readonly_fields = ("results", "by_template")
