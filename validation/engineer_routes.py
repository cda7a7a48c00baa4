from django.urls import path

from validation import engineer_pages

app_name = "engineer"

urlpatterns = [
    path("models/new/", engineer_pages.model_new, name="model-new"),
    path("datasets/new/", engineer_pages.dataset_new, name="dataset-new"),
    path("versions/<int:pk>/provenance/", engineer_pages.provenance_add, name="provenance-add"),
    path("models/<int:pk>/versions/new/", engineer_pages.version_upload, name="version-upload"),
    path("versions/<int:pk>/manage/", engineer_pages.version_manage, name="version-manage"),
    path("versions/<int:pk>/move/", engineer_pages.version_move, name="version-move"),
    path("versions/<int:pk>/runs/new/", engineer_pages.run_start, name="run-start"),
]
