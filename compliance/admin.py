"""Admin for compliance records. The audit trail is read-only here as everywhere: nobody adds, edits or deletes events."""

from __future__ import annotations

from django.contrib import admin

from compliance.models import AuditEvent, Feedback, Incident
from registry.admin import ScopedAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["seq", "occurred_at", "actor_username", "action", "object_type", "object_id"]
    list_filter = ["action", "object_type"]
    search_fields = ["object_repr", "actor_username", "request_id"]
    ordering = ["-seq"]
    date_hierarchy = "occurred_at"
    actions = None

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class _ReadOnly(ScopedAdmin):
    """Feedback and incidents change through their services (pages and API), never in the admin."""

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Feedback)
class FeedbackAdmin(_ReadOnly):
    list_display = ["pk", "created_at", "deployment", "clinician", "case_reference", "agreement", "error_type", "severity"]
    list_filter = ["agreement", "error_type", "severity"]
    list_select_related = ["deployment__institution", "deployment__version__foundation_model", "clinician"]
    search_fields = ["case_reference", "comment"]
    date_hierarchy = "created_at"
    show_full_result_count = False  # no COUNT over every report on each page


@admin.register(Incident)
class IncidentAdmin(_ReadOnly):
    list_display = ["pk", "title", "incident_type", "legal_basis", "aware_on", "deadline", "status", "reported_on"]
    list_filter = ["status", "incident_type", "route"]
    list_select_related = ["version__foundation_model"]
    search_fields = ["title", "description", "authority_reference"]
