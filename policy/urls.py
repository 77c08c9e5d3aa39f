from django.urls import path

from . import views

app_name = "policy"
urlpatterns = [
    path("", views.policy_list, name="list"),
    path("new/", views.policy_new, name="new"),
    path("<int:pk>/", views.policy_detail, name="detail"),
    path("<int:pk>/diff/", views.diff, name="diff"),
    path("<int:pk>/versions/<int:version_pk>/", views.version_detail, name="version"),
    path("<int:pk>/versions/<int:version_pk>/rubric.json", views.version_rubric_json, name="rubric-json"),
    path("<int:pk>/draft/", views.draft_edit, name="draft"),
    path("<int:pk>/draft/start/", views.draft_start, name="draft-start"),
    path("<int:pk>/draft/preview/", views.draft_preview, name="draft-preview"),
    path("<int:pk>/draft/rubric/", views.draft_rubric, name="draft-rubric"),
    path("<int:pk>/draft/publish/", views.draft_publish, name="draft-publish"),
    path("<int:pk>/draft/discard/", views.draft_discard, name="draft-discard"),
]
