from django.contrib import admin

from .models import WorkerPing


@admin.register(WorkerPing)
class WorkerPingAdmin(admin.ModelAdmin):
    list_display = ("id", "requested_at", "answered_at", "worker_hostname", "requested_by")
    readonly_fields = ("requested_at",)
