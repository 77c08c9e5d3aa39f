from django.contrib import admin

from .models import Gate, GateRun, ScopedToken


@admin.register(ScopedToken)
class ScopedTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "owner", "scopes", "surface", "expires_at", "revoked_at", "last_used_at")
    readonly_fields = ("prefix", "secret_hash", "last_used_at", "created_at", "created_by")


@admin.register(Gate)
class GateAdmin(admin.ModelAdmin):
    list_display = ("name", "surface", "baseline", "judge_version", "k", "updated_at")


@admin.register(GateRun)
class GateRunAdmin(admin.ModelAdmin):
    list_display = ("gate", "candidate", "status", "exit_code", "source", "created_at", "finished_at")
    list_filter = ("status", "source")
