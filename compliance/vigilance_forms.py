"""Forms of the vigilance pages (intake, triage, awareness, reports, two-officer decisions, field
safety corrective actions): shape only; the rules are ``compliance.vigilance``'s, shared with the API."""

from __future__ import annotations

from django import forms
from django.utils import timezone

from compliance.choices import IncidentDecisionKind, IncidentReportKind, IncidentTriage, IntakeChannel
from compliance.incident_rules import INCIDENT_TYPES
from registry.models import Deployment, ModelVersion

_DATE = forms.DateInput(attrs={"type": "date"})


class IntakeForm(forms.Form):
    """A call, an e-mail or a letter as the officer took it down."""

    version = forms.ModelChoiceField(queryset=ModelVersion.objects.none(), label="Model version concerned")
    deployment = forms.ModelChoiceField(queryset=Deployment.objects.none(), required=False, label="Hospital deployment (if known)")
    channel = forms.ChoiceField(choices=[("", "How did it reach you?"), *[c for c in IntakeChannel.choices if c[0] not in {"feedback", "alert"}]])
    reporter = forms.CharField(max_length=200, label="Who reported it", help_text="Name and role, or the hospital's vigilance contact.")
    received_at = forms.DateTimeField(
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}), label="Received at", help_text="The deadline counts from this day."
    )
    title = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), max_length=10000, label="What was reported")

    def __init__(self, *args, versions, deployments, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["version"].queryset = versions
        self.fields["deployment"].queryset = deployments


class TriageForm(forms.Form):
    outcome = forms.ChoiceField(choices=[("", "Choose"), *[c for c in IncidentTriage.choices if c[0] != IncidentTriage.PENDING]], label="It is")
    incident_type = forms.ChoiceField(
        choices=[("", "Type of serious incident (only for a serious incident)"), *INCIDENT_TYPES.items()], required=False, label="Type"
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=4000, label="Why")


class AwarenessForm(forms.Form):
    aware_on = forms.DateField(widget=_DATE, label="Aware on")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=4000, label="Why this date")


class IncidentReportForm(forms.Form):
    kind = forms.ChoiceField(choices=[("", "Which report"), *IncidentReportKind.choices], label="Report")
    submitted_on = forms.DateField(widget=_DATE, label="Sent on")
    authority = forms.CharField(max_length=200, label="Sent to (authority)")
    reference = forms.CharField(max_length=120, label="Reference")
    summary = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), max_length=10000, label="What the report said")


class DecisionForm(forms.Form):
    kind = forms.ChoiceField(choices=[("", "Propose"), *IncidentDecisionKind.choices], label="Decision")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=4000, label="Reason")


class DecisionConfirmForm(forms.Form):
    decision = forms.IntegerField(widget=forms.HiddenInput)


class FieldSafetyForm(forms.Form):
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=4000, label="Corrective action")
    notice_text = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), max_length=10000, label="Field safety notice (text sent)")
    recipients = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=4000, label="Sent to")
    issued_on = forms.DateField(widget=_DATE, label="Sent on")


def vigilance_page_forms() -> dict:
    """The empty forms the incident page shows an officer who may change it."""
    return {
        "triage_form": TriageForm(),
        "awareness_form": AwarenessForm(),
        "report_form": IncidentReportForm(initial={"submitted_on": timezone.localdate()}),
        "decision_form": DecisionForm(),
        "field_safety_form": FieldSafetyForm(initial={"issued_on": timezone.localdate()}),
    }
