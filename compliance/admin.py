"""Admin for compliance records. The audit trail is read-only here as everywhere: nobody adds, edits or deletes events."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from compliance.alerts import alert_handle
from compliance.change_rules import DEFAULT_CHANGE_RULES, change_plan_create, change_rules_validate
from compliance.choices import AlertStatus
from compliance.models import Alert, ChangePlan, Feedback, Incident
from core.access import may
from core.errors import Conflict
from registry.admin import ScopedAdmin


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


class ChangePlanForm(forms.ModelForm):
    class Meta:
        model = ChangePlan
        fields = ["foundation_model", "rules", "rationale"]

    def clean_rules(self):
        rules = self.cleaned_data["rules"]
        errors = change_rules_validate(rules)
        if errors:
            raise forms.ValidationError([f"{path}: {message}" for path, message in sorted(errors.items())])
        return rules


@admin.register(ChangePlan)
class ChangePlanAdmin(admin.ModelAdmin):
    """Change plans are never edited: officers add a new version (``change_plan_create``), which
    every later change log names; existing versions are shown read-only."""

    form = ChangePlanForm
    list_display = ["pk", "foundation_model", "version", "created_by", "created_at"]
    list_filter = ["foundation_model"]
    list_select_related = ["foundation_model", "created_by"]
    readonly_fields = ["version", "created_by", "created_at"]
    actions = None

    def get_changeform_initial_data(self, request) -> dict:
        return {"rules": DEFAULT_CHANGE_RULES, **super().get_changeform_initial_data(request)}

    def has_view_permission(self, request, obj=None) -> bool:
        return may(request.user, "dossier", write=False)

    def has_add_permission(self, request) -> bool:
        return may(request.user, "dossier", write=True)

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        created = change_plan_create(actor=request.user, foundation_model=obj.foundation_model, rules=obj.rules, rationale=obj.rationale)
        obj.pk, obj.version, obj.rules, obj.created_by, obj.created_at = (
            created.pk,
            created.version,
            created.rules,
            created.created_by,
            created.created_at,
        )


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
