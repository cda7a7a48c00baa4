"""An incident in the fields of the MDR manufacturer incident report (MIR) form, as structured JSON
and as a PDF, so an officer copies it into the authority's form (or EUDAMED) field by field.

``MIR_FIELDS`` is the mapping: the section of the MIR form (version 7.3.1 of the European
Commission's form), the field as the form names it, and the RadTrust record it is read from.
What RadTrust does not hold (UDI-DI, SRN, notified-body certificate, IMDRF codes, patient age and
sex) is exported as ``None`` with the reason, never guessed; the officer completes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.template.loader import render_to_string
from django.utils import timezone

from compliance.choices import CorrectiveActionKind, IncidentReportKind, IncidentTriage
from compliance.incident_rules import INCIDENT_TYPES
from compliance.models import Incident

FORM = "MDR Manufacturer Incident Report (MIR), form version 7.3.1"
NOT_HELD = "Not held in RadTrust: complete it from the quality system."

_CLASSIFICATION = {
    "death": "Death",
    "serious_deterioration": "Unanticipated serious deterioration in state of health",
    "public_health_threat": "Serious public health threat",
}


def _latest_report(i: Incident):
    return i.reports.order_by("-submitted_on", "-pk").first()


def _report_type(i: Incident) -> str:
    kinds = list(i.reports.order_by("submitted_on", "pk").values_list("kind", flat=True))
    if not kinds:
        return "Initial report (draft: not yet sent)"
    if kinds[-1] == IncidentReportKind.FINAL:
        return "Combined initial and final report" if len(kinds) == 1 else "Final report"
    return "Follow-up report" if kinds[-1] == IncidentReportKind.FOLLOW_UP else "Initial report"


def _occurred(i: Incident) -> str | None:
    if i.intake_id:
        return i.intake.received_at.date().isoformat()
    source = i.feedback or i.alert
    return timezone.localtime(source.created_at).date().isoformat() if source else None


def _actions(i: Incident, kinds: set[str]) -> list[dict[str, Any]]:
    return [
        {
            "kind": a.get_kind_display(),
            "description": a.description,
            "taken_at": a.taken_at.date().isoformat(),
            "field_safety_notices": [{"text": n.text, "recipients": n.recipients, "issued_on": n.issued_on.isoformat()} for n in a.notices.all()],
        }
        for a in i.actions.prefetch_related("notices")
        if a.kind in kinds
    ]


def _final_summary(i: Incident) -> str | None:
    final = i.reports.filter(kind=IncidentReportKind.FINAL).first()
    return final.summary if final else None


Field = tuple[str, str, str, str, Callable[[Incident], Any]]

# (section, field number, the form's field, RadTrust source, reader)
MIR_FIELDS: tuple[Field, ...] = (
    (
        "1 Administrative information",
        "1.1",
        "Recipient: national competent authority",
        "IncidentReport.authority (latest)",
        lambda i: getattr(_latest_report(i), "authority", None),
    ),
    (
        "1 Administrative information",
        "1.2",
        "Date of this report",
        "IncidentReport.submitted_on (latest)",
        lambda i: _latest_report(i).submitted_on.isoformat() if _latest_report(i) else None,
    ),
    ("1 Administrative information", "1.3", "Reference number assigned by the manufacturer", "Incident.id", lambda i: f"RADTRUST-INC-{i.pk}"),
    (
        "1 Administrative information",
        "1.4",
        "Reference number assigned by the competent authority",
        "IncidentReport.reference (latest)",
        lambda i: getattr(_latest_report(i), "reference", None),
    ),
    ("1 Administrative information", "1.5", "Type of report", "IncidentReport.kind (all)", _report_type),
    (
        "1 Administrative information",
        "1.6",
        "Does the incident represent a serious public health threat?",
        "Incident.incident_type",
        lambda i: i.incident_type == "public_health_threat",
    ),
    ("1 Administrative information", "1.7", "Classification of incident", "Incident.incident_type, Incident.triage", lambda i: _classification(i)),
    (
        "1 Administrative information",
        "1.8",
        "Other competent authorities this report was sent to",
        "IncidentReport.authority (all)",
        lambda i: sorted(set(i.reports.values_list("authority", flat=True))),
    ),
    ("2 Information on submitter", "2.1", "Status of submitter", "fixed", lambda i: "Manufacturer"),
    ("2 Information on submitter", "2.2", "Manufacturer name", "FoundationModel.provider.name", lambda i: i.version.foundation_model.provider.name),
    (
        "2 Information on submitter",
        "2.3",
        "Manufacturer address",
        "Institution.address",
        lambda i: i.version.foundation_model.provider.address or None,
    ),
    (
        "2 Information on submitter",
        "2.4",
        "Manufacturer e-mail",
        "Institution.contact_email",
        lambda i: i.version.foundation_model.provider.contact_email or None,
    ),
    (
        "2 Information on submitter",
        "2.5",
        "Manufacturer country",
        "Institution.country",
        lambda i: i.version.foundation_model.provider.country or None,
    ),
    ("2 Information on submitter", "2.6", "Single registration number (SRN)", NOT_HELD, lambda i: None),
    ("3 Medical device information", "3.1", "Trade name of the device", "FoundationModel.name", lambda i: i.version.foundation_model.name),
    ("3 Medical device information", "3.2", "Software version", "ModelVersion.version", lambda i: i.version.version),
    ("3 Medical device information", "3.3", "Model or catalogue identifier", "ModelVersion.artifact_sha256", lambda i: i.version.artifact_sha256),
    (
        "3 Medical device information",
        "3.4",
        "Risk class (MDR Annex VIII)",
        "FoundationModel.mdr_class",
        lambda i: i.version.foundation_model.get_mdr_class_display() or None,
    ),
    ("3 Medical device information", "3.5", "UDI-DI / Basic UDI-DI", NOT_HELD, lambda i: None),
    ("3 Medical device information", "3.6", "Notified body and certificate number", NOT_HELD, lambda i: None),
    (
        "3 Medical device information",
        "3.7",
        "Intended purpose",
        "FoundationModel.intended_purpose",
        lambda i: i.version.foundation_model.intended_purpose,
    ),
    ("4 Incident information", "4.1", "Date the manufacturer became aware", "Incident.aware_on", lambda i: i.aware_on.isoformat()),
    ("4 Incident information", "4.2", "Date the incident occurred", "Feedback.created_at, Alert.created_at or IncidentIntake.received_at", _occurred),
    ("4 Incident information", "4.3", "Incident description narrative", "Incident.description", lambda i: i.description),
    ("4 Incident information", "4.4", "Number of patients involved", "Feedback (one case) or unknown", lambda i: 1 if i.feedback_id else None),
    (
        "4 Incident information",
        "4.5",
        "Healthcare facility",
        "Deployment.institution.name",
        lambda i: i.deployment.institution.name if i.deployment_id else None,
    ),
    ("4 Incident information", "4.6", "Operator of the device at the time", "Feedback (a clinician) or intake reporter", lambda i: _operator(i)),
    ("4 Incident information", "4.7", "IMDRF adverse event codes", NOT_HELD, lambda i: None),
    (
        "4 Incident information",
        "4.8",
        "Reporting deadline and legal basis",
        "Incident.deadline, Incident.legal_basis",
        lambda i: {"deadline": i.deadline.isoformat() if i.deadline else None, "legal_basis": i.legal_basis},
    ),
    (
        "5 Patient information",
        "5.1",
        "Patient identifier (pseudonymous)",
        "Feedback.case_reference",
        lambda i: i.feedback.case_reference if i.feedback_id else None,
    ),
    (
        "5 Patient information",
        "5.2",
        "Health impact as reported",
        "Feedback.severity",
        lambda i: i.feedback.get_severity_display() if i.feedback_id else None,
    ),
    ("5 Patient information", "5.3", "Age, sex, weight", NOT_HELD + " RadTrust keeps no patient data.", lambda i: None),
    (
        "6 Manufacturer's preliminary comments",
        "6.1",
        "Preliminary analysis (triage)",
        "Incident.triage, Incident.triage_reason",
        lambda i: f"{i.get_triage_display()}: {i.triage_reason}" if i.triage_reason else i.get_triage_display(),
    ),
    (
        "6 Manufacturer's preliminary comments",
        "6.2",
        "Initial actions taken",
        "CorrectiveAction (other than FSCA)",
        lambda i: _actions(i, {k for k in CorrectiveActionKind.values if k != CorrectiveActionKind.FIELD_SAFETY_ACTION}),
    ),
    ("7 Results of the final investigation", "7.1", "Manufacturer's final analysis and root cause", "IncidentReport.summary (final)", _final_summary),
    (
        "7 Results of the final investigation",
        "7.2",
        "Field safety corrective action and notice",
        "CorrectiveAction (FSCA) with FieldSafetyNotice",
        lambda i: _actions(i, {CorrectiveActionKind.FIELD_SAFETY_ACTION}),
    ),
    (
        "8 Comments",
        "8.1",
        "Changes of the date of awareness",
        "AwarenessCorrection",
        lambda i: [f"{c.previous.isoformat()} to {c.aware_on.isoformat()}: {c.reason}" for c in i.awareness_corrections.all()],
    ),
)


def _classification(i: Incident) -> str:
    if i.triage != IncidentTriage.SERIOUS:
        return i.get_triage_display()
    if not i.medical_device or i.route != "mdr_art87":
        return f"Not an MDR serious incident: {INCIDENT_TYPES[i.incident_type].lower()} ({i.legal_basis})"
    return _CLASSIFICATION.get(i.incident_type, "Other serious incident")


def _operator(i: Incident) -> str | None:
    if i.feedback_id:
        return "Healthcare professional (radiologist or other clinician)"
    return i.intake.reporter if i.intake_id else None


def mir_export(incident: Incident) -> dict[str, Any]:
    """The incident as MIR sections and fields: number, the form's label, the value and where it comes from."""
    incident = Incident.objects.select_related("version__foundation_model__provider", "deployment__institution", "feedback", "intake").get(
        pk=incident.pk
    )
    sections: dict[str, list[dict[str, Any]]] = {}
    for section, number, label, source, read in MIR_FIELDS:
        value = read(incident)
        sections.setdefault(section, []).append({"field": number, "label": label, "value": value, "source": source})
    return {
        "form": FORM,
        "incident": incident.pk,
        "generated_at": timezone.now().isoformat(),
        "sections": [{"section": name, "fields": fields} for name, fields in sections.items()],
    }


def _display(value: Any) -> str:
    """A field's value in words for the PDF; empty where there is nothing to show."""
    if value is None or value == []:
        return ""
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, dict):
        return "; ".join(f"{k.replace('_', ' ')}: {_display(v) or '—'}" for k, v in value.items())
    if isinstance(value, list):
        return "\n".join(_display(v) for v in value)
    return str(value)


def mir_pdf(incident: Incident) -> bytes:
    """The same fields as a PDF (WeasyPrint), for the file and for copying into the authority's form."""
    from weasyprint import HTML  # heavy; only PDF rendering needs it

    mir = mir_export(incident)
    for section in mir["sections"]:
        for field in section["fields"]:
            field["display"] = _display(field["value"])
    html = render_to_string("compliance/mir_report.html", {"mir": mir})
    return HTML(string=html).write_pdf()
