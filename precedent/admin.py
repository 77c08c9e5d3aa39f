from django.contrib import admin

from .models import Precedent, PrecedentEmbedding, PrecedentRevision, PrecedentSet


@admin.register(Precedent)
class PrecedentAdmin(admin.ModelAdmin):
    list_display = ("id", "query", "status", "clause", "provenance", "policy", "updated_at")
    list_filter = ("status", "provenance", "policy")
    search_fields = ("query", "body", "rationale")
    readonly_fields = ("content_hash", "revision")


@admin.register(PrecedentRevision)
class PrecedentRevisionAdmin(admin.ModelAdmin):
    list_display = ("precedent", "number", "note", "changed_by", "changed_at")


@admin.register(PrecedentEmbedding)
class PrecedentEmbeddingAdmin(admin.ModelAdmin):
    list_display = ("precedent", "model_name", "text_hash")
    readonly_fields = ("vector",)


@admin.register(PrecedentSet)
class PrecedentSetAdmin(admin.ModelAdmin):
    list_display = ("policy", "hash", "size", "created_at")
    readonly_fields = ("members",)
