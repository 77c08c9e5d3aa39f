from django.contrib import admin

from .models import Assignment, ExternalAssessor, HumanLabel, ReviewQueue


@admin.register(ReviewQueue)
class ReviewQueueAdmin(admin.ModelAdmin):
    list_display = ("name", "sample", "policy_version", "overlap", "created_at")
    filter_horizontal = ("reviewers",)


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ("queue", "reviewer", "item", "status", "assigned_at", "expires_at")
    list_filter = ("queue", "status")
    raw_id_fields = ("item",)


@admin.register(HumanLabel)
class HumanLabelAdmin(admin.ModelAdmin):
    list_display = ("item", "reviewer", "revision", "is_latest", "policy_version", "source", "created_at")
    list_filter = ("source", "is_latest", "policy_version")
    raw_id_fields = ("item", "supersedes", "queue")
    readonly_fields = ("labels", "revision", "is_latest", "rubric_hash", "supersedes")

    def has_change_permission(self, request, obj=None):
        # Labels are never edited in place: corrections are new revisions (review.services.human_label_correct).
        return False


@admin.register(ExternalAssessor)
class ExternalAssessorAdmin(admin.ModelAdmin):
    list_display = ("user", "created_by", "created_at")
    raw_id_fields = ("user", "created_by")
