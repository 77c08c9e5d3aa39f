from django.urls import path

from . import views

app_name = "comparisons"
urlpatterns = [
    path("", views.index, name="index"),
    path("new/", views.new, name="new"),
    path("history/", views.history, name="history"),
    path("<int:pk>/", views.detail, name="detail"),
    path("<int:pk>/queries/<int:query_id>/", views.query, name="query"),
    path("<int:pk>/review-slice/", views.review_slice, name="review-slice"),
    path("<int:pk>/recompute/", views.recompute, name="recompute"),
]
