from django.urls import path

from validation import pages

app_name = "federated"

urlpatterns = [
    path("federated/", pages.federated_study_list, name="list"),
    path("federated/<int:pk>/", pages.federated_study_detail, name="detail"),
]
