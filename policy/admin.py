from django.contrib import admin

from .models import Policy, PolicyClause, PolicyVersion, Surface


@admin.register(Surface)
class SurfaceAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "created_at")
    prepopulated_fields = {"slug": ("name",)}


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    list_display = ("name", "surface", "slug", "created_at")
    list_filter = ("surface",)


@admin.register(PolicyVersion)
class PolicyVersionAdmin(admin.ModelAdmin):
    list_display = ("policy", "label", "status", "rubric_hash", "published_at", "published_by")
    list_filter = ("status", "policy")
    readonly_fields = ("rubric_hash", "lock_version", "published_at", "published_by", "number", "status")

    def has_change_permission(self, request, obj=None):
        # Published versions are frozen; edit drafts through the policy editor (optimistic locking).
        return obj is None or not obj.is_published

    def has_delete_permission(self, request, obj=None):
        return obj is None or not obj.is_published


@admin.register(PolicyClause)
class PolicyClauseAdmin(admin.ModelAdmin):
    list_display = ("anchor", "title", "version", "level", "order")
    list_filter = ("version__policy",)
