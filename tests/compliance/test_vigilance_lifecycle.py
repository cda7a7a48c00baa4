"""The vigilance lifecycle as officers use it: intake from a clinician's flag, a high-severity report,
a call; awareness from the earliest record; triage; reports that never overwrite each other; closing
unreported with two officers; the investigation lock; field safety corrective actions; the MIR export."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from compliance.choices import AlertKind, AlertSeverity
from compliance.incidents import incident_escalate, incident_transition
from compliance.mir import MIR_FIELDS, mir_export
from compliance.models import Alert, Feedback, Incident, IncidentReport
from compliance.vigilance import (
    field_safety_action_record,
    incident_awareness_change,
    incident_decision_confirm,
    incident_decision_propose,
    incident_intake_record,
    incident_report_record,
    incident_triage,
)
from core.errors import Conflict, ImmutableRecord
from core.models import AuditEvent

pytestmark = pytest.mark.django_db


def _report(incident, officer, kind="initial", **fields):
    fields.setdefault("submitted_on", timezone.localdate())
    fields.setdefault("authority", "BfArM")
    fields.setdefault("reference", f"BFARM-{kind}")
    fields.setdefault("summary", f"The {kind} report.")
    return incident_report_record(actor=officer, incident=incident, kind=kind, **fields)


def test_a_clinicians_flag_opens_an_incident_for_triage_and_a_high_severity_raises_an_alert(personas, report):
    feedback = report("disagree", error_type="false_negative", severity="high", suspected_serious_incident=True, comment="Missed a pneumothorax.")
    incident = Incident.objects.get(feedback=feedback)
    assert (incident.triage, incident.deadline, incident.created_by) == ("pending", None, personas["clinician_north"])
    assert incident.aware_on == timezone.localtime(feedback.created_at).date() and "Missed a pneumothorax." in incident.description
    alert = Alert.objects.get(feedback=feedback)
    assert (alert.kind, alert.severity, alert.deployment_id) == (AlertKind.HIGH_SEVERITY_REPORT, AlertSeverity.CRITICAL, feedback.deployment_id)
    assert AuditEvent.objects.filter(object_type="compliance.incident", object_id=str(incident.pk), action="create").exists()


def test_a_moderate_report_without_a_flag_opens_nothing(report):
    feedback = report("disagree", severity="moderate")
    assert not Incident.objects.filter(feedback=feedback).exists() and not Alert.objects.filter(feedback=feedback).exists()


def test_awareness_comes_from_the_earliest_record_not_the_day_of_escalation(personas, report):
    """Issue 18: a 30-day-old report escalated today got a deadline 40 days after it reached the system."""
    feedback = report("disagree", severity="high")
    reached = timezone.localdate() - timedelta(days=30)
    Feedback.objects.filter(pk=feedback.pk).update(created_at=timezone.now() - timedelta(days=30))
    feedback.refresh_from_db()
    incident = incident_escalate(actor=personas["officer"], feedback=feedback, title="Missed", description="d", incident_type="serious_deterioration")
    assert incident.aware_on == reached and incident.deadline == reached + timedelta(days=10) and incident.overdue
    # An alert raised from it is no later than the feedback behind it.
    alert = Alert.objects.get(feedback=feedback)
    from compliance.vigilance import awareness_from_records

    assert awareness_from_records(alert=alert) == reached


def test_awareness_changes_only_with_a_reason_and_moves_the_deadline(personas, report):
    incident = incident_escalate(actor=personas["officer"], feedback=report("disagree"), title="t", description="d", incident_type="death")
    later = incident.aware_on + timedelta(days=0)
    with pytest.raises(ValidationError, match="written reason"):
        incident_escalate(
            actor=personas["officer"],
            feedback=report("disagree", case_reference="CASE-c2"),
            title="t",
            description="d",
            aware_on=later - timedelta(days=3),
        )
    earlier = incident.aware_on - timedelta(days=4)
    with pytest.raises(ValidationError):
        incident_awareness_change(actor=personas["officer"], incident=incident, aware_on=earlier, reason=" ")
    changed = incident_awareness_change(
        actor=personas["officer"], incident=incident, aware_on=earlier, reason="The hospital phoned four days before the report."
    )
    assert changed.aware_on == earlier and changed.deadline == earlier + timedelta(days=10)
    correction = changed.awareness_corrections.get()
    assert (correction.previous, correction.aware_on, correction.changed_by) == (incident.aware_on, earlier, personas["officer"])
    assert AuditEvent.objects.filter(object_type="compliance.awarenesscorrection").exists()
    with pytest.raises(ImmutableRecord):
        correction.reason = "rewritten"
        correction.save()


def test_officer_intake_from_a_call_opens_an_incident_aware_from_the_call(personas, deployed):
    received = timezone.now() - timedelta(days=2)
    incident = incident_intake_record(
        actor=personas["officer"],
        version=deployed["version"],
        deployment=deployed["north"],
        channel="phone",
        reporter="Dr Weber, head of radiology at North",
        description="A flagged nodule was read as benign after the model's low score.",
        received_at=received,
        title="Call from North",
    )
    assert incident.triage == "pending" and incident.aware_on == timezone.localtime(received).date()
    assert incident.intake.reporter.startswith("Dr Weber")
    with pytest.raises(ValidationError, match="future"):
        incident_intake_record(
            actor=personas["officer"],
            version=deployed["version"],
            channel="email",
            reporter="x",
            description="y",
            received_at=timezone.now() + timedelta(days=1),
            title="t",
        )


def test_triage_to_a_route_or_to_a_trend_or_signal(personas, report, deployed):
    flagged = Incident.objects.get(feedback=report("disagree", severity="high", suspected_serious_incident=True))
    with pytest.raises(ValidationError, match="type of serious incident"):
        incident_triage(actor=personas["officer"], incident=flagged, outcome="serious", reason="r")
    serious = incident_triage(
        actor=personas["officer"], incident=flagged, outcome="serious", incident_type="serious_deterioration", reason="Harm confirmed."
    )
    assert (serious.route, serious.legal_basis, serious.deadline) == ("mdr_art87", "MDR Art. 87(1)(a), 87(5)", serious.aware_on + timedelta(days=10))
    rise = Alert.objects.create(
        version=deployed["version"], deployment=deployed["north"], kind="disagreement_rise", severity="warning", subject="s", message="m"
    )
    trend = incident_escalate(actor=personas["officer"], alert=rise, title="Rising disagreement", description="CUSUM alarm")
    trend = incident_triage(
        actor=personas["officer"], incident=trend, outcome="trend", reason="More non-serious disagreements: a trend, no harm reported."
    )
    assert (trend.triage, trend.route, trend.deadline, trend.legal_basis) == ("trend", "", None, "MDR Art. 88")
    assert not trend.overdue and not Incident.objects.filter(pk=trend.pk, legal_basis__contains="87(3)").exists()
    # A post-market signal is not reported and closes by one officer with a note.
    signal = incident_triage(actor=personas["officer"], incident=trend, outcome="signal", reason="No trend either.")
    with pytest.raises(Conflict, match="not reported"):
        _report(signal, personas["officer"])
    closed = incident_transition(actor=personas["officer"], incident=signal, to_status="closed", closing_note="Revalidation scheduled.")
    assert closed.status == "closed"


def test_reports_are_separate_records_and_never_overwrite_each_other(personas, report):
    officer = personas["officer"]
    incident = incident_escalate(actor=officer, feedback=report("disagree"), title="t", description="d", incident_type="other")
    with pytest.raises(ValidationError, match="initial report"):
        _report(incident, officer, kind="follow_up")
    initial = _report(incident, officer, summary="Incomplete: root cause under investigation.")
    follow_up = _report(incident, officer, kind="follow_up", reference="BFARM-2")
    with pytest.raises(ValidationError, match="initial report has been recorded"):
        _report(incident, officer)
    final = _report(incident, officer, kind="final", authority="BfArM", reference="BFARM-3", summary="Root cause: threshold drift.")
    with pytest.raises(Conflict, match="final report"):
        _report(incident, officer, kind="follow_up")
    incident.refresh_from_db()
    assert [r.kind for r in incident.reports.all()] == ["initial", "follow_up", "final"]
    assert incident.reported_on == initial.submitted_on and incident.authority_reference == "BFARM-initial" and incident.status == "reported"
    assert follow_up.reference == "BFARM-2" and final.summary.startswith("Root cause")
    with pytest.raises(ImmutableRecord):
        initial.summary = "overwritten"
        initial.save()
    assert IncidentReport.objects.get(pk=initial.pk).summary.startswith("Incomplete")
    assert AuditEvent.objects.filter(object_type="compliance.incidentreport").count() == 3


def test_closing_an_unreported_serious_incident_takes_a_second_officer(personas, report):
    officer, second = personas["officer"], personas["officer2"]
    incident = incident_escalate(actor=officer, feedback=report("disagree"), title="t", description="d", incident_type="death")
    with pytest.raises(Conflict, match="two officers"):
        incident_transition(actor=officer, incident=incident, to_status="closed", closing_note="Not our device.")
    with pytest.raises(ValidationError):
        incident_decision_propose(actor=officer, incident=incident, kind="close_unreported", reason="")
    decision = incident_decision_propose(
        actor=officer, incident=incident, kind="close_unreported", reason="The death was unrelated: the study was never read with the model."
    )
    with pytest.raises(PermissionDenied):
        incident_decision_confirm(actor=officer, decision=decision)
    incident.refresh_from_db()
    assert incident.status == "open"
    incident_decision_confirm(actor=second, decision=decision)
    incident.refresh_from_db()
    assert incident.status == "closed" and "unrelated" in incident.closing_note
    actions = set(AuditEvent.objects.filter(object_type="compliance.incidentdecision").values_list("action", flat=True))
    assert actions == {"create", "confirm"}


def test_the_investigation_lock_keeps_artifact_purpose_and_class_until_the_authority_is_told(personas, report, deployed):
    officer, second = personas["officer"], personas["officer2"]
    version = deployed["version"]
    model = version.foundation_model
    incident = incident_escalate(actor=officer, feedback=report("disagree"), title="t", description="d", incident_type="other")
    model.intended_purpose = "Something else entirely."
    with pytest.raises(Conflict, match="intended purpose may not change"):
        model.save()
    model.refresh_from_db()
    model.known_limitations = "Weaker on portable films."  # not locked
    model.save()
    version.artifact_sha256 = "f" * 64
    with pytest.raises(Conflict, match="model file"):
        version.save()
    version.refresh_from_db()
    decision = incident_decision_propose(actor=officer, incident=incident, kind="lift_lock", reason="Security patch of the runtime; same weights.")
    model.mdr_class = "IIb"
    with pytest.raises(Conflict):
        model.save()  # proposed is not enough
    model.refresh_from_db()
    incident_decision_confirm(actor=second, decision=decision)
    model.mdr_class = "IIb"
    model.save()
    assert type(model).objects.get(pk=model.pk).mdr_class == "IIb"


def test_reporting_lifts_the_lock(personas, report, deployed):
    incident = incident_escalate(actor=personas["officer"], feedback=report("disagree"), title="t", description="d", incident_type="other")
    _report(incident, personas["officer"])
    model = deployed["version"].foundation_model
    model.intended_purpose = "Triage of chest radiographs in adults."
    model.save()


def test_a_field_safety_corrective_action_keeps_its_notice(personas, report):
    incident = incident_escalate(actor=personas["officer"], feedback=report("disagree"), title="t", description="d", incident_type="other")
    with pytest.raises(ValidationError, match="recipients|received"):
        field_safety_action_record(
            actor=personas["officer"],
            incident=incident,
            description="Raise threshold",
            notice_text="n",
            recipients="",
            issued_on=timezone.localdate(),
        )
    action = field_safety_action_record(
        actor=personas["officer"],
        incident=incident,
        description="Operating threshold raised from 0.5 to 0.6 at every site.",
        notice_text="Urgent field safety notice: read every film scored 0.5-0.6 yourself.",
        recipients="Radiology departments of North and South hospitals",
        issued_on=timezone.localdate(),
    )
    assert action.kind == "field_safety_action" and action.notices.get().recipients.startswith("Radiology")
    exported = mir_export(incident)
    fields = {f["field"]: f for s in exported["sections"] for f in s["fields"]}
    assert fields["7.2"]["value"][0]["field_safety_notices"][0]["text"].startswith("Urgent")


def test_the_mir_export_maps_every_field_and_says_what_is_not_held(personas, report, deployed):
    feedback = report("disagree", severity="high", case_reference="CASE-9d8e")
    incident = incident_escalate(
        actor=personas["officer"], feedback=feedback, title="Missed", description="Missed pneumothorax.", incident_type="serious_deterioration"
    )
    _report(incident, personas["officer"], summary="Initial, incomplete.")
    exported = mir_export(incident)
    fields = {f["field"]: f for s in exported["sections"] for f in s["fields"]}
    assert len(fields) == len(MIR_FIELDS) and all(f["label"] and f["source"] for f in fields.values())
    assert fields["1.5"]["value"] == "Initial report"
    assert fields["1.7"]["value"] == "Unanticipated serious deterioration in state of health"
    assert fields["4.1"]["value"] == incident.aware_on.isoformat() and fields["5.1"]["value"] == "CASE-9d8e"
    assert fields["3.2"]["value"] == deployed["version"].version and fields["1.4"]["value"] == "BFARM-initial"
    assert fields["3.5"]["value"] is None and "Not held" in fields["3.5"]["source"]


def test_the_alert_of_a_flagged_report_is_not_a_second_incident(personas, report):
    feedback = report("disagree", severity="high", suspected_serious_incident=True)
    alert = Alert.objects.get(feedback=feedback)
    with pytest.raises(Conflict, match="already"):
        incident_escalate(actor=personas["officer"], alert=alert, title="t", description="d")
    assert Incident.objects.count() == 1
