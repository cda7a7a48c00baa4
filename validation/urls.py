from django.urls import path

from validation import views

app_name = "trust"

urlpatterns = [
    path("versions/<int:pk>/trust/", views.version_trust, name="version"),
]
