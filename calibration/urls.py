from django.urls import path

from . import views

app_name = "calibration"
urlpatterns = [
    path("", views.index, name="index"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
    path("runs/<int:pk>/cell/", views.cell, name="cell"),
    path("runs/<int:pk>/disagreements/", views.find_disagreements, name="find-disagreements"),
    path("runs/<int:pk>/rejudge/", views.rejudge, name="rejudge"),
    path("compare/<int:old>/<int:new>/", views.compare, name="compare"),
    path("triage/", views.triage, name="triage"),
    path("triage/<int:pk>/", views.triage_detail, name="triage-detail"),
]
