"""Admin for validation runs and alerts: read-only, scoped like the API; runs are created and
cancelled through the API, alerts are raised by runs and handled through the service."""

from __future__ import annotations

from django.contrib import admin, messages

from radtrust.errors import Conflict
from registry.access import may
from registry.admin import ScopedAdmin
from validation.choices import AlertStatus
from validation.evidence import alert_handle
from validation.models import Alert, ValidationRun


@admin.register(ValidationRun)
class ValidationRunAdmin(ScopedAdmin):
    list_display = ["pk", "version", "dataset", "status", "stage", "progress", "attempt", "worker", "is_baseline", "created_at", "finished_at"]
    list_filter = ["status", "queue", "mlflow_state", "is_baseline"]
    search_fields = ["version__foundation_model__name", "dataset__name", "worker", "error"]
    list_select_related = ["version__foundation_model", "dataset"]
    date_hierarchy = "created_at"

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Alert)
class AlertAdmin(ScopedAdmin):
    list_display = ["pk", "severity", "kind", "subject", "version", "deployment", "run", "status", "created_at"]
    list_filter = ["status", "severity", "kind"]
    search_fields = ["subject", "message", "version__foundation_model__name"]
    list_select_related = ["version__foundation_model", "deployment__institution", "run"]
    date_hierarchy = "created_at"
    actions = ["acknowledge"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not may(request.user, "alert", write=True):
            actions.pop("acknowledge", None)
        return actions

    @admin.action(description="Acknowledge the selected open alerts")
    def acknowledge(self, request, queryset):
        done = 0
        for alert in queryset.filter(status=AlertStatus.OPEN):
            try:
                alert_handle(actor=request.user, alert=alert, status=AlertStatus.ACKNOWLEDGED)
                done += 1
            except Conflict as exc:
                self.message_user(request, f"Alert {alert.pk}: {exc}", messages.WARNING)
        self.message_user(request, f"{done} alert(s) acknowledged.", messages.SUCCESS)
