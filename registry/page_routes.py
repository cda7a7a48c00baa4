from django.urls import path

from registry import pages

app_name = "registry"

urlpatterns = [
    path("data-use-grants/", pages.data_use_grant_list, name="data-use-list"),
    path("data-use-grants/<int:pk>/revoke/", pages.data_use_revoke, name="data-use-revoke"),
    path("versions/<int:pk>/lineage/", pages.version_lineage, name="version-lineage"),
]
