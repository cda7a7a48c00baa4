"""Serious incidents (AI Act Art. 73, MDR Art. 87): escalation from a feedback or an alert,
the reporting deadline from ``compliance.incident_rules``, the status workflow, corrective
actions, and the incident report (PDF and JSON).

Every step is audited. An incident is escalated once per source (the one-to-one
fields refuse a second); while it is neither reported nor closed the version cannot
be retired (``registry.guards``), so its artifacts stay as they were until the
authority is told.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.template.loader import render_to_string
from django.utils import timezone

from compliance.choices import CorrectiveActionKind, IncidentReportKind, IncidentStatus
from compliance.incident_rules import INCIDENT_TYPES, MDR, reported_late, reporting_rule
from compliance.models import CorrectiveAction, Feedback, Incident
from compliance.vigilance import incident_open, incident_report_record, needs_two_officers_to_close
from core.audit import audit_action
from core.choices import Role
from core.errors import Conflict
from core.readable import title
from registry.choices import DeploymentStatus
from registry.guards import deployment_refusal
from registry.models import Deployment

NEXT: dict[str, frozenset[str]] = {
    IncidentStatus.OPEN: frozenset({IncidentStatus.INVESTIGATING, IncidentStatus.REPORTED, IncidentStatus.CLOSED}),
    IncidentStatus.INVESTIGATING: frozenset({IncidentStatus.REPORTED, IncidentStatus.CLOSED}),
    IncidentStatus.REPORTED: frozenset({IncidentStatus.INVESTIGATING, IncidentStatus.CLOSED}),
    IncidentStatus.CLOSED: frozenset(),
}


def incident_escalate(
    *,
    actor,
    title: str,
    description: str,
    incident_type: str = "",
    aware_on: date | None = None,
    awareness_reason: str = "",
    feedback: Feedback | None = None,
    alert=None,
) -> Incident:
    """An officer opens an incident from one feedback or one alert; with a type it is triaged as a
    serious incident on its route at once. Awareness is the source's earliest record
    (``compliance.vigilance``); another date needs ``awareness_reason``."""
    if (feedback is None) == (alert is None):
        raise ValidationError({"source": "Escalate either a feedback or an alert."})
    source = feedback or alert
    if alert is not None and alert.feedback_id:
        opened = Incident.objects.filter(feedback_id=alert.feedback_id).first()
        if opened is not None:  # a flagged high-severity report: its alert and its feedback are one event
            raise Conflict(f"The report behind this alert is incident {opened.pk} already.", code="already_escalated")
    return incident_open(
        actor=actor,
        version=source.version,
        deployment=source.deployment,
        feedback=feedback,
        alert=alert,
        title=title,
        description=description,
        incident_type=incident_type,
        aware_on=aware_on,
        awareness_reason=awareness_reason,
    )


def incident_transition(
    *,
    actor,
    incident: Incident,
    to_status: str,
    reported_on: date | None = None,
    authority_reference: str = "",
    authority: str = "",
    closing_note: str = "",
) -> Incident:
    """Move an incident on. Reporting records the initial report (``IncidentReport``); closing needs a
    note, and a serious incident the authority was not told of closes only by two officers
    (``vigilance.incident_decision_propose``)."""
    if to_status == IncidentStatus.REPORTED:
        if reported_on is None:
            raise ValidationError({"reported_on": "Say when the authority was told."})
        if not authority_reference.strip():
            raise ValidationError({"authority_reference": "Give the authority's reference for the report."})
    with transaction.atomic():
        locked = Incident.objects.select_for_update().get(pk=incident.pk)
        if to_status not in NEXT[locked.status]:
            allowed = ", ".join(sorted(NEXT[locked.status])) or "none (it is closed)"
            raise Conflict(
                f"An incident that is {locked.get_status_display().lower()} cannot become {to_status}; allowed next: {allowed}.",
                code="incident_transition",
            )
        if to_status == IncidentStatus.REPORTED:
            incident_report_record(
                actor=actor,
                incident=locked,
                kind=IncidentReportKind.INITIAL,
                submitted_on=reported_on,
                authority=authority or _default_authority(locked),
                reference=authority_reference,
                summary=locked.description,
            )
            return Incident.objects.get(pk=locked.pk)
        fields = ["status", "updated_at"]
        if to_status == IncidentStatus.CLOSED:
            if not closing_note.strip():
                raise ValidationError({"closing_note": "Say how the incident was resolved, or why it needed no report."})
            if needs_two_officers_to_close(locked):
                raise Conflict(
                    "A serious incident the authority has not been told of is closed only by two officers: propose closing "
                    "it with a reason, and a second officer confirms.",
                    code="needs_second_officer",
                )
            locked.closing_note = closing_note.strip()[:4000]
            fields.append("closing_note")
        locked.status = to_status
        with audit_action(to_status):
            locked.save(update_fields=fields)
    return locked


def _default_authority(incident: Incident) -> str:
    if incident.route == MDR:
        return "Competent authority (MDR vigilance)"
    return "Market surveillance authority (AI Act Art. 73)"


def incident_action_add(*, actor, incident: Incident, kind: str, description: str, confirmed: bool = False) -> CorrectiveAction:
    """Record a corrective action. Suspending or resuming the deployment changes what its clinicians
    can use, so it happens only when ``confirmed`` (the page first says what will happen to whom)."""
    if incident.status == IncidentStatus.CLOSED:
        raise Conflict("The incident is closed; open a new one for new measures.", code="incident_closed")
    if kind not in CorrectiveActionKind.values or kind == CorrectiveActionKind.FIELD_SAFETY_ACTION:
        choices = ", ".join(k for k in CorrectiveActionKind.values if k != CorrectiveActionKind.FIELD_SAFETY_ACTION)
        raise ValidationError({"kind": f"Choose one of: {choices} (field safety corrective actions are recorded with their notice)."})
    if not description.strip():
        raise ValidationError({"description": "Describe the measure."})
    changes_deployment = kind in DEPLOYMENT_ACTIONS
    if changes_deployment and not confirmed:
        raise ValidationError({"confirmed": f"{deployment_effect(incident, kind)} Confirm to go ahead."})
    with transaction.atomic():
        if changes_deployment:
            _set_deployment(incident, kind)
        action = CorrectiveAction(incident=incident, kind=kind, description=description.strip(), taken_by=actor)
        with audit_action("corrective_action"):
            action.save()
    return action


DEPLOYMENT_ACTIONS = {
    CorrectiveActionKind.SUSPEND_DEPLOYMENT: (frozenset({DeploymentStatus.ACTIVE, DeploymentStatus.PLANNED}), DeploymentStatus.SUSPENDED, "suspend"),
    CorrectiveActionKind.RESUME_DEPLOYMENT: (frozenset({DeploymentStatus.SUSPENDED}), DeploymentStatus.ACTIVE, "resume"),
}


def deployment_effect(incident: Incident, kind: str) -> str:
    """What suspending or resuming does, to whom, in the words the confirmation page shows."""
    deployment = incident.deployment
    if deployment is None:
        return "This incident names no deployment."
    version = deployment.version
    who = f"{version.foundation_model.name} {version.version} at {deployment.institution.name}"
    clinicians = deployment.institution.users.filter(is_active=True, groups__name=Role.CLINICIAN).count()
    if kind == CorrectiveActionKind.SUSPEND_DEPLOYMENT:
        return (
            f"{who} will be suspended now: its {clinicians} clinician{'s' if clinicians != 1 else ''} there can no longer use it or "
            "send feedback on it, and they will see your description as the reason, with today's date, until an officer lifts the suspension."
        )
    return f"{who} will be in use again now: its {clinicians} clinician{'s' if clinicians != 1 else ''} there can use it and send feedback again."


def _set_deployment(incident: Incident, kind: str) -> None:
    if incident.deployment_id is None:
        raise ValidationError({"kind": "This incident names no deployment."})
    allowed, target, action = DEPLOYMENT_ACTIONS[kind]
    deployment = Deployment.objects.select_for_update().get(pk=incident.deployment_id)
    if deployment.status not in allowed:
        raise Conflict(f"The deployment is {deployment.get_status_display().lower()} already.", code=f"not_{action}able")
    if target == DeploymentStatus.ACTIVE and (refusal := deployment_refusal(deployment.version, deployment.institution)):
        raise Conflict(f"It cannot be in use again: {refusal}", code="not_on_market")
    deployment.status = target
    with audit_action(action):
        deployment.save(update_fields=["status", "updated_at"])


def overdue_incidents(*, today: date | None = None) -> QuerySet[Incident]:
    """Incidents not yet reported whose deadline has passed."""
    today = today or timezone.localdate()
    return Incident.objects.filter(reported_on__isnull=True, deadline__lt=today).exclude(status=IncidentStatus.CLOSED)


def incident_export(incident: Incident) -> dict:
    """The incident as a structured record (the JSON export and the PDF's content)."""
    rule = reporting_rule(medical_device=incident.medical_device, incident_type=incident.incident_type) if incident.incident_type else None
    source: dict = {}
    if incident.feedback_id:
        f = incident.feedback
        source = {
            "kind": "feedback",
            "id": f.pk,
            "case_reference": f.case_reference,
            "model_output": f.model_output,
            "agreement": f.agreement,
            "agreement_label": f.get_agreement_display(),
            "error_type": f.error_type,
            "error_type_label": f.get_error_type_display(),
            "severity": f.severity,
            "severity_label": f.get_severity_display(),
            "comment": f.comment,
            "given_at": f.created_at.isoformat(),
        }
    elif incident.intake_id:
        i = incident.intake
        source = {
            "kind": "intake",
            "id": i.pk,
            "channel": i.get_channel_display(),
            "reporter": i.reporter,
            "description": i.description,
            "received_at": i.received_at.isoformat(),
        }
    elif incident.alert_id:
        a = incident.alert
        source = {
            "kind": "alert",
            "id": a.pk,
            "alert_kind": a.kind,
            "alert_kind_label": a.get_kind_display(),
            "severity": a.severity,
            "severity_label": a.get_severity_display(),
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
        "status_label": incident.get_status_display(),
        "triage": incident.triage,
        "triage_label": incident.get_triage_display(),
        "triage_reason": incident.triage_reason,
        "incident_type": incident.incident_type,
        "incident_type_label": INCIDENT_TYPES.get(incident.incident_type, "Not triaged yet"),
        "medical_device": incident.medical_device,
        "route": rule.route_label if rule else incident.legal_basis,
        "legal_basis": incident.legal_basis,
        "aware_on": incident.aware_on.isoformat(),
        "awareness_corrections": [
            {"from": c.previous.isoformat(), "to": c.aware_on.isoformat(), "reason": c.reason, "by": c.changed_by.username}
            for c in incident.awareness_corrections.select_related("changed_by")
        ],
        "deadline": incident.deadline.isoformat() if incident.deadline else None,
        "days_allowed": rule.days if rule else None,
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
        "deployment": None
        if deployment is None
        else {
            "id": deployment.pk,
            "institution": deployment.institution.name,
            "status": deployment.status,
            "status_label": deployment.get_status_display(),
        },
        "source": source,
        "reports": [
            {
                "kind": r.kind,
                "kind_label": r.get_kind_display(),
                "submitted_on": r.submitted_on.isoformat(),
                "authority": r.authority,
                "reference": r.reference,
                "summary": r.summary,
                "recorded_by": r.recorded_by.username,
            }
            for r in incident.reports.select_related("recorded_by")
        ],
        "corrective_actions": [
            {
                "kind": a.kind,
                "kind_label": a.get_kind_display(),
                "description": a.description,
                "taken_by": a.taken_by.username,
                "taken_at": a.taken_at.isoformat(),
                "field_safety_notices": [{"text": n.text, "recipients": n.recipients, "issued_on": n.issued_on.isoformat()} for n in a.notices.all()],
            }
            for a in incident.actions.select_related("taken_by").prefetch_related("notices")
        ],
        "escalated_by": incident.created_by.username,
        "escalated_at": incident.created_at.isoformat(),
    }


def incident_report_html(incident: Incident) -> str:
    """The incident report the PDF prints, from the same record as the JSON export; the source's
    fields by their titles, each code by its ``_label`` beside it."""
    report = _dates_for_reading(incident_export(incident))
    source = [(title(k), report["source"].get(f"{k}_label", v)) for k, v in report["source"].items() if not k.endswith("_label")]
    return render_to_string("compliance/incident_report.html", {"report": report, "source": source, "generated_at": timezone.now()})


def _dates_for_reading(report: dict) -> dict:
    """The export's ISO dates and times as an authority reads them ("7 Dec 2026", "7 Dec 2026 14:05 UTC"),
    at any depth; the JSON export keeps ISO."""

    def readable(value):
        if isinstance(value, dict):
            return {k: readable(v) for k, v in value.items()}
        if isinstance(value, list):
            return [readable(v) for v in value]
        if isinstance(value, str) and len(value) >= 10 and value[4:5] == "-" and value[7:8] == "-":
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                return value
            if len(value) == 10:
                return f"{moment:%-d %b %Y}"
            return f"{moment.astimezone(UTC):%-d %b %Y %H:%M} UTC" if moment.tzinfo else f"{moment:%-d %b %Y %H:%M}"
        return value

    return readable(report)


def incident_report_pdf(incident: Incident) -> bytes:
    """The incident report as a PDF (WeasyPrint)."""
    from weasyprint import HTML  # heavy; only PDF rendering needs it

    return HTML(string=incident_report_html(incident)).write_pdf()
