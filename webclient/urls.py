"""Routes of the browser client: the page at ``/`` and its assets under ``/client/``."""

from django.urls import path

from . import views

app_name = "webclient"

urlpatterns = [
    path("", views.index, name="index"),
    path("client/<str:name>", views.asset, name="asset"),
]
