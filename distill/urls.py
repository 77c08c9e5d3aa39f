from django.urls import path

from . import views

app_name = "distill"
urlpatterns = [
    path("", views.index, name="index"),
    path("training-sets/new/", views.training_set_new, name="training-set-new"),
    path("training-sets/<int:pk>/", views.training_set_detail, name="training-set"),
    path("training-sets/<int:pk>/train/", views.student_new, name="student-new"),
    path("students/<int:pk>/", views.student_detail, name="student"),
    path("students/<int:pk>/cancel/", views.student_cancel, name="student-cancel"),
    path("students/<int:pk>/resume/", views.student_resume, name="student-resume"),
    path("students/<int:pk>/evaluate/", views.student_evaluate, name="student-evaluate"),
    path("students/<int:pk>/promote/", views.student_promote, name="student-promote"),
]
