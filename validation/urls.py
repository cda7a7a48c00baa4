from django.urls import path

from validation import views

app_name = "trust"

urlpatterns = [
    path("versions/<int:pk>/trust/", views.version_trust, name="version"),
    path("federated/", views.federated_study_list, name="federated-list"),
    path("federated/<int:pk>/", views.federated_study_detail, name="federated-detail"),
]
