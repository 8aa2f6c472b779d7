"""URLs of the test project."""

from django.urls import path

from django_project import views
from sark_sync.contrib.django.views import readiness

urlpatterns = [
    path("echo/", views.echo),
    path("fail/<str:kind>/", views.fail),
    path("ready/", readiness),
]
