from django.urls import path

from . import api, views

app_name = "gates"
urlpatterns = [
    path("gates/", views.index, name="index"),
    path("gates/new/", views.gate_new, name="new"),
    path("gates/<int:pk>/", views.gate_detail, name="detail"),
    path("gates/<int:pk>/edit/", views.gate_edit, name="edit"),
    path("gates/<int:pk>/runs/", views.gate_run_create, name="run-create"),
    path("gates/runs/<int:pk>/", views.run_detail, name="run"),
    path("gates/tokens/", views.tokens, name="tokens"),
    path("gates/tokens/new/", views.token_new, name="token-new"),
    path("gates/tokens/<int:pk>/revoke/", views.token_revoke_view, name="token-revoke"),
    # CI's API (gates/api.py), bearer tokens only.
    path("api/gates/<slug:name>/runs", api.runs, name="api-runs"),
    path("api/gates/<slug:name>/runs/<int:run_id>", api.run_detail, name="api-run"),
    path("api/traffic/imports", api.traffic_imports, name="api-traffic-imports"),
]
