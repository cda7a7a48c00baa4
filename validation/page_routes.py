from django.urls import include, path

from validation import pages

federated_pages = [
    path("federated/", pages.federated_study_list, name="list"),
    path("federated/<int:pk>/", pages.federated_study_detail, name="detail"),
]
run_pages = [
    path("", pages.run_list, name="list"),
    path("compare/", pages.run_compare, name="compare"),
    path("<int:pk>/", pages.run_detail, name="detail"),
    path("<int:pk>/progress/", pages.run_progress, name="progress"),
]

urlpatterns = [path("", include((federated_pages, "federated"))), path("runs/", include((run_pages, "runs")))]
