"""Admin for compliance records. The audit trail is read-only here as everywhere: nobody adds, edits or deletes events."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied

from compliance.alerts import alert_handle
from compliance.change_control import (
    change_plan_approve,
    change_plan_propose,
    conformity_assessment_problems,
    conformity_assessment_record,
)
from compliance.change_rules import DEFAULT_CHANGE_RULES, change_rules_validate
from compliance.choices import AlertStatus
from compliance.duties import provider_officer_refusal
from compliance.models import Alert, ChangePlan, ConformityAssessment, Feedback, Incident
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


def _for_user(form: type[forms.ModelForm], user) -> type[forms.ModelForm]:
    """The admin's form class, knowing who acts (the services' rules depend on it)."""
    return type(form.__name__, (form,), {"user": user})


class ChangePlanForm(forms.ModelForm):
    """Checked by the service's own rules, so the admin refuses what the service refuses."""

    class Meta:
        model = ChangePlan
        fields = ["foundation_model", "rules", "rationale"]

    user = None  # the acting user, set by the admin's get_form

    def clean_foundation_model(self):
        model = self.cleaned_data.get("foundation_model")
        if model is None:
            raise forms.ValidationError("Name the model: a change plan is part of one AI system's technical documentation (Annex IV 2(f)).")
        refusal = provider_officer_refusal(self.user, model, "propose the change plan")
        if refusal:
            raise forms.ValidationError(refusal)
        return model

    def clean_rules(self):
        rules = self.cleaned_data["rules"]
        errors = change_rules_validate(rules)
        if errors:
            raise forms.ValidationError([f"{path}: {message}" for path, message in sorted(errors.items())])
        return rules


@admin.register(ChangePlan)
class ChangePlanAdmin(admin.ModelAdmin):
    """Change plans are never edited: an officer of the model's provider proposes a new version
    (``change_plan_propose``) and a second officer approves it with the action below; existing
    versions are shown read-only."""

    form = ChangePlanForm
    list_display = ["pk", "foundation_model", "version", "created_by", "approved_by", "created_at"]
    list_filter = ["foundation_model"]
    list_select_related = ["foundation_model", "created_by", "approval__approved_by"]
    readonly_fields = ["version", "created_by", "created_at"]
    actions = ["approve"]

    @admin.display(description="Approved by (in force)")
    def approved_by(self, obj) -> str:
        approval = getattr(obj, "approval", None)
        return f"{approval.approved_by} on {approval.approved_at:%Y-%m-%d}" if approval else "not yet: proposed"

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

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not may(request.user, "dossier", write=True):
            actions.pop("approve", None)
        return actions

    def save_model(self, request, obj, form, change) -> None:
        created = change_plan_propose(actor=request.user, foundation_model=obj.foundation_model, rules=obj.rules, rationale=obj.rationale)
        obj.pk, obj.version, obj.rules, obj.created_by, obj.created_at = (
            created.pk,
            created.version,
            created.rules,
            created.created_by,
            created.created_at,
        )

    def get_form(self, request, obj=None, change=False, **kwargs):
        return _for_user(super().get_form(request, obj, change=change, **kwargs), request.user)

    @admin.action(description="Approve the selected proposed plans (puts them in force; a second officer of the provider)")
    def approve(self, request, queryset):
        for plan in queryset.select_related("foundation_model__provider", "created_by"):
            try:
                change_plan_approve(actor=request.user, plan=plan)
                self.message_user(request, f"{plan} is in force for the versions derived after the next signed dossier.", messages.SUCCESS)
            except (Conflict, PermissionDenied) as refusal:
                self.message_user(request, str(refusal), messages.ERROR)


class ConformityAssessmentForm(forms.ModelForm):
    """Checked by the service's own rules, so the admin refuses what the API refuses."""

    class Meta:
        model = ConformityAssessment
        fields = ["version", "route", "mdr_procedure", "notified_body", "certificate_reference", "assessed_on"]

    user = None  # the acting user, set by the admin's get_form

    def clean(self):
        data = super().clean()
        version = data.get("version")
        if version is None:
            return data
        refusal = provider_officer_refusal(self.user, version.foundation_model, "record the conformity assessment of a version")
        if refusal:
            raise forms.ValidationError(refusal)
        fields = {k: data.get(k) or "" for k in ("route", "mdr_procedure", "notified_body", "certificate_reference")}
        for name, problem in conformity_assessment_problems(version=version, assessed_on=data.get("assessed_on"), **fields).items():
            self.add_error(name if name in self.fields else None, problem)
        return data


@admin.register(ConformityAssessment)
class ConformityAssessmentAdmin(admin.ModelAdmin):
    """Recorded by an officer of the version's provider (``conformity_assessment_record``); never edited."""

    form = ConformityAssessmentForm
    list_display = ["pk", "version", "route", "mdr_procedure", "notified_body", "certificate_reference", "assessed_on", "recorded_by"]
    list_filter = ["route", "mdr_procedure"]
    list_select_related = ["version__foundation_model", "recorded_by"]
    search_fields = ["notified_body", "certificate_reference"]
    actions = None

    def get_form(self, request, obj=None, change=False, **kwargs):
        return _for_user(super().get_form(request, obj, change=change, **kwargs), request.user)

    def has_view_permission(self, request, obj=None) -> bool:
        return may(request.user, "dossier", write=False)

    def has_add_permission(self, request) -> bool:
        return may(request.user, "dossier", write=True)

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        created = conformity_assessment_record(
            actor=request.user,
            version=obj.version,
            route=obj.route,
            mdr_procedure=obj.mdr_procedure,
            notified_body=obj.notified_body,
            certificate_reference=obj.certificate_reference,
            assessed_on=obj.assessed_on,
        )
        obj.pk, obj.recorded_by, obj.recorded_at = created.pk, created.recorded_by, created.recorded_at


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
