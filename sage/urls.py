from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("system/", views.system, name="system"),
    path("system/pings/", views.ping_create, name="ping-create"),
    path("system/pings/<int:pk>/", views.ping_detail, name="ping-detail"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Any logged-in user changes their own password; the session stays logged in (Django updates its hash).
    path("accounts/password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("traffic/", include("traffic.urls")),
    path("review/", include("review.urls")),
    path("policies/", include("policy.urls")),
    path("precedents/", include("precedent.urls")),
    path("judges/", include("judges.urls")),
    path("calibration/", include("calibration.urls")),
    path("comparisons/", include("comparisons.urls")),
    path("distill/", include("distill.urls")),
    path("", include("gates.urls")),  # /gates/… pages and /api/gates/… for CI
    path("admin/", admin.site.urls),
]
