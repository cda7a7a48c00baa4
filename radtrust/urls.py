from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from core.pages import api_docs_page

urlpatterns = [
    path("", include("compliance.pages.routes")),
    path("", include("validation.page_routes")),
    path("", include("validation.engineer_routes")),
    path("", include("registry.page_routes")),
    path("", include("core.page_routes")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("api/", include("core.urls")),
    path("api/", include("registry.api.urls")),
    path("api/", include("compliance.api.urls")),
    path("api/", include("validation.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file: the page runs under a CSP without inline script.
    path("api/docs/", api_docs_page(SpectacularSwaggerSplitView.as_view(url_name="schema")), name="api-docs"),
    path("api/redoc/", api_docs_page(SpectacularRedocView.as_view(url_name="schema")), name="api-redoc"),
]

# Under /api/ Django's own error answers are JSON too (no route, a refused Host header, a crash).
handler400 = "core.api.bad_request"
handler404 = "core.api.page_not_found"
handler500 = "core.api.server_error"
