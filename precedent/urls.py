from django.urls import path

from . import views

app_name = "precedent"
urlpatterns = [
    path("", views.precedent_list, name="list"),
    path("new/", views.precedent_new, name="new"),
    path("bulk/", views.precedent_bulk, name="bulk"),
    path("import/", views.precedent_import, name="import"),
    path("export/", views.precedent_export, name="export"),
    path("<int:pk>/", views.precedent_detail, name="detail"),
]
