from django.urls import path

from . import views

urlpatterns = [
    path("ask", views.ask, name="ask"),
    path("aask", views.aask, name="aask"),
    path("stream", views.stream, name="stream"),
    path("astream", views.astream, name="astream"),
    path("usage", views.usage, name="usage"),
]
