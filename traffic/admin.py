from django.contrib import admin

from .models import Document, Item, Query, ResultEntry, Sample, SampleItem, TrafficImport, Variant


@admin.register(Variant)
class VariantAdmin(admin.ModelAdmin):
    list_display = ("name", "surface", "role", "ramp_percent", "created_at")
    list_filter = ("surface", "role")


@admin.register(Query)
class QueryAdmin(admin.ModelAdmin):
    list_display = ("text", "segment", "locale", "external_id")
    list_filter = ("segment",)
    search_fields = ("text", "external_id")


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ("external_id", "title", "url", "content_hash")
    search_fields = ("external_id", "title")


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ("hash", "query", "document")
    raw_id_fields = ("query", "document")
    search_fields = ("hash",)


@admin.register(TrafficImport)
class TrafficImportAdmin(admin.ModelAdmin):
    list_display = ("filename", "surface", "format", "rows", "seconds", "created_by", "created_at")
    list_filter = ("surface",)
    readonly_fields = ("sha256", "rows", "stats", "seconds")


@admin.register(ResultEntry)
class ResultEntryAdmin(admin.ModelAdmin):
    list_display = ("variant", "query", "rank", "item", "served_at")
    list_filter = ("variant",)
    raw_id_fields = ("traffic_import", "query", "item")


class SampleItemInline(admin.TabularInline):
    model = SampleItem
    raw_id_fields = ("item",)
    extra = 0


@admin.register(Sample)
class SampleAdmin(admin.ModelAdmin):
    list_display = ("name", "surface", "strategy", "seed", "item_count", "created_at")
    list_filter = ("surface", "strategy")
    readonly_fields = ("snapshot", "item_count")
    inlines = [SampleItemInline]


@admin.register(SampleItem)
class SampleItemAdmin(admin.ModelAdmin):
    list_display = ("sample", "position", "item")
    raw_id_fields = ("item",)
