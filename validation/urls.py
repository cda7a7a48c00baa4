from django.urls import path

from validation import views

app_name = "federated"

urlpatterns = [
    path("federated/", views.federated_study_list, name="list"),
    path("federated/<int:pk>/", views.federated_study_detail, name="detail"),
]
