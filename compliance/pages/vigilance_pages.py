"""Vigilance pages for officers: take down a call or an e-mail, triage, correct the date of
awareness with a reason, record reports, propose and confirm two-officer decisions, record a field
safety corrective action with its notice, and print the MIR fields. Each form posts to one view
that calls one service (``compliance.vigilance``) and returns to the incident with what happened."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from compliance import selectors, vigilance
from compliance.mir import mir_pdf
from compliance.pages.post_market_pages import incident_change
from compliance.vigilance_forms import AwarenessForm, DecisionConfirmForm, DecisionForm, FieldSafetyForm, IncidentReportForm, IntakeForm, TriageForm
from core.pages import form_errors, requires
from registry.selectors import deployment_list, version_list


@requires("incident", write=True)
@require_http_methods(["GET", "POST"])
def incident_intake(request):
    form = IntakeForm(
        request.POST or None,
        initial={"received_at": timezone.localtime().strftime("%Y-%m-%dT%H:%M")},
        versions=version_list(user=request.user).select_related("foundation_model"),
        deployments=deployment_list(user=request.user).select_related("version__foundation_model", "institution"),
    )
    if request.method == "POST" and form.is_valid():
        try:
            incident = vigilance.incident_intake_record(actor=request.user, **form.cleaned_data)
        except ValidationError as exc:
            form_errors(form, exc)
        else:
            messages.success(request, f"Incident {incident.pk} opened from the {incident.intake.get_channel_display().lower()}: triage it next.")
            return redirect("pages:incident-detail", pk=incident.pk)
    return render(request, "compliance/incident_intake.html", {"form": form}, status=400 if form.errors else 200)


@requires("incident", write=True)
@require_POST
def incident_triage(request, pk: int):
    def change(incident, data):
        vigilance.incident_triage(actor=request.user, incident=incident, **data)

    return incident_change(request, pk, TriageForm, change, "Triage recorded.", "Say what it is and why.")


@requires("incident", write=True)
@require_POST
def incident_awareness(request, pk: int):
    def change(incident, data):
        vigilance.incident_awareness_change(actor=request.user, incident=incident, **data)

    return incident_change(request, pk, AwarenessForm, change, "Date of awareness changed; the deadline follows it.", "Give the date and the reason.")


@requires("incident", write=True)
@require_POST
def incident_report_add(request, pk: int):
    def change(incident, data):
        vigilance.incident_report_record(actor=request.user, incident=incident, **data)

    return incident_change(request, pk, IncidentReportForm, change, "Report recorded.", "Fill in every field of the report.")


@requires("incident", write=True)
@require_POST
def incident_decision(request, pk: int):
    def change(incident, data):
        vigilance.incident_decision_propose(actor=request.user, incident=incident, **data)

    return incident_change(request, pk, DecisionForm, change, "Proposed: a second compliance officer must confirm it.", "Choose and give a reason.")


@requires("incident", write=True)
@require_POST
def incident_decision_confirm(request, pk: int):
    def change(incident, data):
        decision = incident.decisions.filter(pk=data["decision"]).first()
        if decision is None:
            raise ValidationError({"decision": "This incident has no such proposal."})
        try:
            vigilance.incident_decision_confirm(actor=request.user, decision=decision)
        except PermissionDenied as exc:
            raise ValidationError({"decision": str(exc)}) from None

    return incident_change(request, pk, DecisionConfirmForm, change, "Confirmed by a second officer.", "Choose the proposal to confirm.")


@requires("incident", write=True)
@require_POST
def incident_field_safety(request, pk: int):
    def change(incident, data):
        vigilance.field_safety_action_record(actor=request.user, incident=incident, **data)

    return incident_change(
        request, pk, FieldSafetyForm, change, "Field safety corrective action and notice recorded.", "Fill in the action and its notice."
    )


@requires("incident")
def incident_mir_pdf(request, pk: int):
    incident = get_object_or_404(selectors.incident_list(user=request.user), pk=pk)
    response = HttpResponse(mir_pdf(incident), content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="mir-incident-{incident.pk}.pdf"'
    return response
