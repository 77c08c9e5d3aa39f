from django.urls import path

from . import views

app_name = "review"

urlpatterns = [
    path("", views.index, name="index"),
    path("queues/", views.queue_create_view, name="queue-create"),
    path("labels/import/", views.label_import_view, name="label-import"),
    path("queues/<int:pk>/", views.queue_detail, name="queue-detail"),
    path("queues/<int:pk>/labels/export/", views.queue_labels_export_view, name="queue-labels-export"),
    path("queues/<int:pk>/label/", views.label_next, name="label"),
    path("queues/<int:pk>/label/<int:assignment_id>/", views.label_item, name="label-item"),
    path("queues/<int:pk>/label/<int:assignment_id>/submit/", views.label_submit, name="label-submit"),
    path("queues/<int:pk>/label/<int:assignment_id>/skip/", views.label_skip, name="label-skip"),
    path("queues/<int:pk>/label/<int:assignment_id>/back/", views.label_back, name="label-back"),
]
