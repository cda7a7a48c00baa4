from django.urls import path

from registry import pages

app_name = "registry"

urlpatterns = [
    path("data-use-grants/", pages.data_use_grant_list, name="data-use-list"),
    path("data-use-grants/<int:pk>/revoke/", pages.data_use_revoke, name="data-use-revoke"),
    path("versions/<int:pk>/lineage/", pages.version_lineage, name="version-lineage"),
    path("datasets/<int:pk>/", pages.dataset_detail, name="dataset-detail"),
    path("datasets/<int:pk>/pacs/", pages.dataset_pacs, name="dataset-pacs"),
    path("versions/<int:pk>/adaptation/", pages.adaptation_new, name="adaptation-new"),
]
