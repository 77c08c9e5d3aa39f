from django.urls import path

from . import views

app_name = "judges"
urlpatterns = [
    path("", views.index, name="index"),
    path("new/", views.judge_new, name="new"),
    path("<int:pk>/", views.judge_detail, name="detail"),
    path("runs/new/", views.run_new, name="run-new"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="run-cancel"),
    path("runs/<int:pk>/resume/", views.run_resume, name="run-resume"),
    path("judgments/<int:pk>/", views.judgment_detail, name="judgment"),
    path("api/runs/", views.api_runs, name="api-runs"),
    path("api/runs/<int:pk>/", views.api_run, name="api-run"),
]
