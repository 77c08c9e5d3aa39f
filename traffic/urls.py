from django.urls import path

from . import views

app_name = "traffic"

urlpatterns = [
    path("", views.index, name="index"),
    path("variants/", views.variant_create_view, name="variant-create"),
    path("imports/", views.import_upload, name="import-upload"),
    path("api/imports/", views.api_import, name="api-import"),
    path("samples/", views.sample_draw_view, name="sample-draw"),
    path("samples/<int:pk>/", views.sample_detail, name="sample-detail"),
]
