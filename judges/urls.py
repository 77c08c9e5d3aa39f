from django.urls import path

from . import injection_views, io_views, views

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
    # Labels in and out (issue 12): judges/io_views.py.
    path("<int:pk>/import/", io_views.judge_import, name="import"),
    path("runs/<int:pk>/export/", io_views.run_export, name="run-export"),
    path("api/judges/<int:pk>/imports/", io_views.api_judgments_import, name="api-judgments-import"),
    # Prompt injection (issue 15): judges/injection_views.py.
    path("versions/<int:pk>/injection-checks/", injection_views.injection_check_new, name="injection-check-new"),
    path("injection-checks/<int:pk>/", injection_views.injection_check_detail, name="injection-check"),
]
