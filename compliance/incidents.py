"""Serious incidents (AI Act Art. 73, MDR Art. 87): escalation from a feedback or an alert,
the reporting deadline from ``compliance.incident_rules``, the status workflow, corrective
actions, and the incident report (PDF and JSON).

Every step is audited. An incident is escalated once per source (the one-to-one
fields refuse a second); while it is neither reported nor closed the version cannot
be retired (``registry.guards``), so its artifacts stay as they were until the
authority is told.
"""

from __future__ import annotations

from datetime import date

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.template.loader import render_to_string
from django.utils import timezone

from compliance.choices import CorrectiveActionKind, IncidentStatus
from compliance.incident_rules import INCIDENT_TYPES, reported_late, reporting_deadline, reporting_rule
from compliance.models import CorrectiveAction, Feedback, Incident
from core.audit import audit_action
from core.errors import Conflict
from registry.choices import DeploymentStatus
from registry.models import Deployment

NEXT: dict[str, frozenset[str]] = {
    IncidentStatus.OPEN: frozenset({IncidentStatus.INVESTIGATING, IncidentStatus.REPORTED}),
    IncidentStatus.INVESTIGATING: frozenset({IncidentStatus.REPORTED, IncidentStatus.CLOSED}),
    IncidentStatus.REPORTED: frozenset({IncidentStatus.INVESTIGATING, IncidentStatus.CLOSED}),
    IncidentStatus.CLOSED: frozenset(),
}


def incident_escalate(
    *,
    actor,
    title: str,
    description: str,
    incident_type: str,
    aware_on: date,
    feedback: Feedback | None = None,
    alert=None,
) -> Incident:
    """Open an incident from one feedback or one alert, with its route and deadline."""
    if (feedback is None) == (alert is None):
        raise ValidationError({"source": "Escalate either a feedback or an alert."})
    if incident_type not in INCIDENT_TYPES:
        raise ValidationError({"incident_type": f"Choose one of: {', '.join(INCIDENT_TYPES)}."})
    if len(description) > 10000 or len(title) > 200:
        raise ValidationError(
            {"description" if len(description) > 10000 else "title": "Too long: keep the title to 200 and the description to 10,000 characters."}
        )
    source = feedback or alert
    if aware_on > timezone.localdate():
        raise ValidationError({"aware_on": "The date of awareness cannot be in the future."})
    if aware_on < timezone.localtime(source.created_at).date():
        raise ValidationError(
            {
                "aware_on": f"The provider cannot have become aware before the {'feedback' if feedback else 'alert'} was recorded ({timezone.localtime(source.created_at).date()})."
            }
        )
    version = source.version
    medical_device = bool(version.foundation_model.mdr_class)
    rule = reporting_rule(medical_device=medical_device, incident_type=incident_type)
    incident = Incident(
        version=version,
        deployment=source.deployment,
        feedback=feedback,
        alert=alert,
        title=title.strip(),
        description=description.strip(),
        incident_type=incident_type,
        medical_device=medical_device,
        aware_on=aware_on,
        route=rule.route,
        legal_basis=rule.legal_basis,
        deadline=reporting_deadline(medical_device=medical_device, incident_type=incident_type, aware_on=aware_on),
        created_by=actor,
    )
    incident.full_clean(exclude=["feedback", "alert"], validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic(), audit_action("escalate"):
            incident.save()
    except IntegrityError:
        raise Conflict(f"This {'feedback' if feedback else 'alert'} has been escalated already.", code="already_escalated") from None
    return incident


def incident_transition(
    *,
    actor,
    incident: Incident,
    to_status: str,
    reported_on: date | None = None,
    authority_reference: str = "",
    closing_note: str = "",
) -> Incident:
    """Move an incident on: reporting needs the date and the authority's reference, closing a note."""
    with transaction.atomic():
        locked = Incident.objects.select_for_update().get(pk=incident.pk)
        if to_status not in NEXT[locked.status]:
            allowed = ", ".join(sorted(NEXT[locked.status])) or "none (it is closed)"
            raise Conflict(
                f"An incident that is {locked.get_status_display().lower()} cannot become {to_status}; allowed next: {allowed}.",
                code="incident_transition",
            )
        fields = ["status", "updated_at"]
        if to_status == IncidentStatus.REPORTED:
            if reported_on is None:
                raise ValidationError({"reported_on": "Say when the authority was told."})
            if reported_on < locked.aware_on or reported_on > timezone.localdate():
                raise ValidationError({"reported_on": f"The report date lies between the date of awareness ({locked.aware_on}) and today."})
            if not authority_reference.strip():
                raise ValidationError({"authority_reference": "Give the authority's reference for the report."})
            locked.reported_on, locked.authority_reference = reported_on, authority_reference.strip()[:120]
            fields += ["reported_on", "authority_reference"]
        if to_status == IncidentStatus.CLOSED:
            if not closing_note.strip():
                raise ValidationError({"closing_note": "Say how the incident was resolved, or why it needed no report."})
            locked.closing_note = closing_note.strip()
            fields.append("closing_note")
        locked.status = to_status
        with audit_action(to_status):
            locked.save(update_fields=fields)
    return locked


def incident_action_add(*, actor, incident: Incident, kind: str, description: str) -> CorrectiveAction:
    """Record a corrective action; suspending the deployment changes its status (audited)."""
    if incident.status == IncidentStatus.CLOSED:
        raise Conflict("The incident is closed; open a new one for new measures.", code="incident_closed")
    if kind not in CorrectiveActionKind.values:
        raise ValidationError({"kind": f"Choose one of: {', '.join(CorrectiveActionKind.values)}."})
    if not description.strip():
        raise ValidationError({"description": "Describe the measure."})
    with transaction.atomic():
        if kind == CorrectiveActionKind.SUSPEND_DEPLOYMENT:
            _suspend(incident)
        action = CorrectiveAction(incident=incident, kind=kind, description=description.strip(), taken_by=actor)
        with audit_action("corrective_action"):
            action.save()
    return action


def _suspend(incident: Incident) -> None:
    if incident.deployment_id is None:
        raise ValidationError({"kind": "This incident names no deployment to suspend."})
    deployment = Deployment.objects.select_for_update().get(pk=incident.deployment_id)
    if deployment.status not in {DeploymentStatus.ACTIVE, DeploymentStatus.PLANNED}:
        raise Conflict(f"The deployment is {deployment.get_status_display().lower()} already.", code="not_suspendable")
    deployment.status = DeploymentStatus.SUSPENDED
    with audit_action("suspend"):
        deployment.save(update_fields=["status", "updated_at"])


def overdue_incidents(*, today: date | None = None) -> QuerySet[Incident]:
    """Incidents not yet reported whose deadline has passed."""
    today = today or timezone.localdate()
    return Incident.objects.filter(reported_on__isnull=True, deadline__lt=today).exclude(status=IncidentStatus.CLOSED)


def incident_export(incident: Incident) -> dict:
    """The incident as a structured record (the JSON export and the PDF's content)."""
    rule = reporting_rule(medical_device=incident.medical_device, incident_type=incident.incident_type)
    source: dict = {}
    if incident.feedback_id:
        f = incident.feedback
        source = {
            "kind": "feedback",
            "id": f.pk,
            "case_reference": f.case_reference,
            "model_output": f.model_output,
            "agreement": f.agreement,
            "error_type": f.error_type,
            "severity": f.severity,
            "comment": f.comment,
            "given_at": f.created_at.isoformat(),
        }
    elif incident.alert_id:
        a = incident.alert
        source = {
            "kind": "alert",
            "id": a.pk,
            "alert_kind": a.kind,
            "severity": a.severity,
            "message": a.message,
            "run": a.run_id,
            "raised_at": a.created_at.isoformat(),
        }
    deployment = incident.deployment
    return {
        "id": incident.pk,
        "title": incident.title,
        "description": incident.description,
        "status": incident.status,
        "incident_type": incident.incident_type,
        "incident_type_label": INCIDENT_TYPES[incident.incident_type],
        "medical_device": incident.medical_device,
        "route": rule.route_label,
        "legal_basis": incident.legal_basis,
        "aware_on": incident.aware_on.isoformat(),
        "deadline": incident.deadline.isoformat(),
        "days_allowed": rule.days,
        "overdue": incident.overdue,
        "reported_on": incident.reported_on.isoformat() if incident.reported_on else None,
        "reported_late": reported_late(incident.deadline, incident.reported_on) if incident.reported_on else None,
        "authority_reference": incident.authority_reference,
        "closing_note": incident.closing_note,
        "model": {
            "name": incident.version.foundation_model.name,
            "version": incident.version.version,
            "artifact_sha256": incident.version.artifact_sha256,
            "mdr_class": incident.version.foundation_model.mdr_class,
            "provider": incident.version.foundation_model.provider.name,
        },
        "deployment": None if deployment is None else {"id": deployment.pk, "institution": deployment.institution.name, "status": deployment.status},
        "source": source,
        "corrective_actions": [
            {"kind": a.kind, "description": a.description, "taken_by": a.taken_by.username, "taken_at": a.taken_at.isoformat()}
            for a in incident.actions.select_related("taken_by")
        ],
        "escalated_by": incident.created_by.username,
        "escalated_at": incident.created_at.isoformat(),
    }


def incident_report_pdf(incident: Incident) -> bytes:
    """The incident report as a PDF (WeasyPrint), from the same record as the JSON export."""
    from weasyprint import HTML  # heavy; only PDF rendering needs it

    html = render_to_string("compliance/incident_report.html", {"report": incident_export(incident), "generated_at": timezone.now()})
    return HTML(string=html).write_pdf()
