"""Admin for validation runs and alerts: read-only, scoped like the API; runs are created and
cancelled through the API, alerts are raised by runs and handled through the service."""

from __future__ import annotations

from django.contrib import admin

from registry.admin import ScopedAdmin
from validation.models import ValidationRun


@admin.register(ValidationRun)
class ValidationRunAdmin(ScopedAdmin):
    list_display = ["pk", "version", "dataset", "status", "stage", "progress", "attempt", "worker", "is_baseline", "created_at", "finished_at"]
    list_filter = ["status", "queue", "mlflow_state", "is_baseline"]
    search_fields = ["version__foundation_model__name", "dataset__name", "worker", "error"]
    list_select_related = ["version__foundation_model", "dataset"]
    date_hierarchy = "created_at"

    def has_change_permission(self, request, obj=None) -> bool:
        return False
