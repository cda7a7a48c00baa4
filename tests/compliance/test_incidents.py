"""Incidents: escalation once per source, the route and deadline from the rules, the workflow,
corrective actions (suspending the deployment), the retire guard, overdue flags and the report."""

from __future__ import annotations

import re
import subprocess
from datetime import date, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from compliance.incidents import (
    incident_action_add,
    incident_escalate,
    incident_export,
    incident_report_html,
    incident_report_pdf,
    incident_transition,
    overdue_incidents,
)
from compliance.models import Alert, Incident
from core.errors import Conflict
from core.models import AuditEvent
from registry.choices import DeploymentStatus, MdrClass, VersionStatus
from registry.services import version_transition

pytestmark = pytest.mark.django_db


def _escalate(personas, feedback, **fields):
    fields.setdefault("title", "Missed pneumothorax")
    fields.setdefault("description", "The model missed a large pneumothorax; the patient deteriorated.")
    fields.setdefault("incident_type", "serious_deterioration")
    fields.setdefault("aware_on", timezone.localdate())
    return incident_escalate(actor=personas["officer"], feedback=feedback, **fields)


def test_a_medical_device_incident_goes_to_mdr_vigilance_with_its_deadline(personas, report):
    feedback = report("disagree", error_type="false_negative", severity="high")
    today = timezone.localdate()
    incident = _escalate(personas, feedback)
    assert incident.medical_device and incident.route == "mdr_art87" and incident.deadline == today + timedelta(days=10)
    assert incident.deployment == feedback.deployment and incident.version == feedback.version
    assert AuditEvent.objects.filter(object_type="compliance.incident", object_id=str(incident.pk), action="create").exists()


def test_fundamental_rights_go_under_the_ai_act_and_non_devices_under_art_73(personas, report, deployed):
    rights = _escalate(personas, report("disagree"), incident_type="fundamental_rights")
    assert rights.route == "ai_act_art73" and rights.deadline == rights.aware_on + timedelta(days=15)
    # Reported, so the investigation lock no longer keeps the class as it was.
    incident_transition(actor=personas["officer"], incident=rights, to_status="reported", reported_on=rights.aware_on, authority_reference="MSA-1")
    model = deployed["version"].foundation_model
    model.mdr_class = MdrClass.NONE
    model.save()
    death = _escalate(personas, report("disagree", case_reference="CASE-b2"), incident_type="death")
    infra = _escalate(personas, report("disagree", case_reference="CASE-b3"), incident_type="critical_infrastructure")
    assert (death.route, (death.deadline - death.aware_on).days) == ("ai_act_art73", 10)
    assert (infra.route, (infra.deadline - infra.aware_on).days) == ("ai_act_art73", 2)


def test_a_source_is_escalated_once(personas, report):
    feedback = report("disagree")
    _escalate(personas, feedback)
    with pytest.raises(Conflict, match="escalated already"):
        _escalate(personas, feedback)
    assert Incident.objects.count() == 1


def test_an_alert_can_be_escalated(personas, deployed):
    alert = Alert.objects.create(
        version=deployed["version"],
        deployment=deployed["north"],
        kind="disagreement_rise",
        severity="warning",
        subject="disagreement_rate",
        message="rising",
    )
    incident = incident_escalate(
        actor=personas["officer"],
        alert=alert,
        title="Disagreement rising",
        description="CUSUM alarm",
        incident_type="other",
        aware_on=timezone.localdate(),
    )
    assert incident.alert == alert and incident.deployment == deployed["north"] and incident.deadline == incident.aware_on + timedelta(days=15)


def test_bad_escalations_are_refused_with_the_field(personas, report):
    feedback = report("disagree")
    with pytest.raises(ValidationError) as caught:
        _escalate(personas, feedback, aware_on=timezone.localdate() + timedelta(days=1))
    assert "future" in caught.value.message_dict["aware_on"][0]
    with pytest.raises(ValidationError) as caught:
        _escalate(personas, feedback, aware_on=timezone.localdate() - timedelta(days=30))
    assert "written reason" in caught.value.message_dict["aware_on"][0]  # awareness is derived (test_vigilance_intake)
    with pytest.raises(ValidationError) as caught:
        _escalate(personas, feedback, description="x" * 10001)
    assert "10,000" in caught.value.message_dict["description"][0]
    with pytest.raises(ValidationError) as caught:
        _escalate(personas, feedback, incident_type="meteor")
    assert "incident_type" in caught.value.message_dict


def test_workflow_reporting_needs_date_and_reference_closing_a_note(personas, report):
    incident = _escalate(personas, report("disagree"))
    officer = personas["officer"]
    with pytest.raises(ValidationError):
        incident_transition(actor=officer, incident=incident, to_status="reported")
    incident = incident_transition(actor=officer, incident=incident, to_status="investigating")
    incident = incident_transition(
        actor=officer, incident=incident, to_status="reported", reported_on=timezone.localdate(), authority_reference="BfArM-2026-0042"
    )
    with pytest.raises(ValidationError):
        incident_transition(actor=officer, incident=incident, to_status="closed")
    incident = incident_transition(actor=officer, incident=incident, to_status="closed", closing_note="Threshold recalibrated in 1.1.0.")
    with pytest.raises(Conflict, match="closed"):
        incident_transition(actor=officer, incident=incident, to_status="investigating")
    actions = list(AuditEvent.objects.filter(object_type="compliance.incident", object_id=str(incident.pk)).values_list("action", flat=True))
    assert actions == ["create", "investigating", "reported", "closed"]


def test_suspending_the_deployment_is_a_corrective_action_and_audited(personas, report, deployed):
    incident = _escalate(personas, report("disagree"))
    with pytest.raises(ValidationError, match="will be suspended now"):  # not without the confirmation
        incident_action_add(
            actor=personas["officer"], incident=incident, kind="suspend_deployment", description="Suspended until the vendor reports."
        )
    deployed["north"].refresh_from_db()
    assert deployed["north"].status == DeploymentStatus.ACTIVE
    incident_action_add(
        actor=personas["officer"], incident=incident, kind="suspend_deployment", description="Suspended until the vendor reports.", confirmed=True
    )
    deployed["north"].refresh_from_db()
    assert deployed["north"].status == DeploymentStatus.SUSPENDED
    assert AuditEvent.objects.filter(object_type="registry.deployment", object_id=str(deployed["north"].pk), action="suspend").exists()
    with pytest.raises(Conflict, match="suspended already"):
        incident_action_add(actor=personas["officer"], incident=incident, kind="suspend_deployment", description="again", confirmed=True)


def test_the_version_cannot_be_retired_before_the_authority_is_told(personas, report, deployed):
    incident = _escalate(personas, report("disagree"))
    with pytest.raises(Conflict, match="not been reported"):
        version_transition(actor=personas["officer"], version=deployed["version"], to_status=VersionStatus.RETIRED)
    incident_transition(
        actor=personas["officer"], incident=incident, to_status="reported", reported_on=timezone.localdate(), authority_reference="REF-1"
    )
    assert version_transition(actor=personas["officer"], version=deployed["version"], to_status=VersionStatus.RETIRED).status == VersionStatus.RETIRED


def test_overdue_incidents_are_flagged_on_officer_pages(personas, report, client):
    incident = _escalate(personas, report("disagree"))
    Incident.objects.filter(pk=incident.pk).update(aware_on=date(2026, 1, 1), deadline=date(2026, 1, 11))
    assert list(overdue_incidents()) == [Incident.objects.get(pk=incident.pk)]
    client.force_login(personas["officer"])
    for url in ("/monitoring/", "/alerts/", "/incidents/", "/feedback/"):
        page = client.get(url).content.decode()
        assert "1 overdue incident report" in page and f"/incidents/{incident.pk}/" in page, url
    client.force_login(personas["clinician_north"])
    assert "overdue incident" not in client.get("/clinician/").content.decode()


def test_report_pdf_and_export_escape_what_people_typed(personas, report, api_client, tmp_path):
    feedback = report("disagree", comment="<script>alert('x')</script> & more")
    incident = _escalate(personas, feedback, description="<b>bold?</b> no")
    exported = api_client(personas["auditor"]).get(f"/api/incidents/{incident.pk}/export/").json()
    assert exported["source"]["comment"].startswith("<script>") and exported["legal_basis"] == incident.legal_basis
    pdf = incident_report_pdf(incident)
    assert pdf.startswith(b"%PDF")
    (tmp_path / "report.pdf").write_bytes(pdf)
    text = subprocess.run(["pdftotext", str(tmp_path / "report.pdf"), "-"], capture_output=True, text=True, check=True).stdout
    assert "<script>alert('x')</script>" in text and "<b>bold?</b> no" in text and incident.legal_basis in text
    response = api_client(personas["officer"]).get(f"/api/incidents/{incident.pk}/report-pdf/")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert incident_export(incident)["deadline"] == incident.deadline.isoformat()


def test_report_names_statuses_and_actions_in_words(personas, report):
    incident = _escalate(personas, report("disagree"))
    incident_action_add(actor=personas["officer"], incident=incident, kind="suspend_deployment", description="Paused", confirmed=True)
    html = incident_report_html(Incident.objects.get(pk=incident.pk))
    assert "<td>Open</td>" in html and "(suspended)" in html and "Suspend the deployment: Paused" in html
    assert "<tr><th>Case reference</th>" in html and "<td>Disagree</td>" in html  # the source's fields and codes in words
    assert "suspend_deployment" not in html and "case_reference" not in html
    aware = Incident.objects.get(pk=incident.pk).aware_on
    assert f"<td>{aware.day} {aware:%b %Y}</td>" in html and aware.isoformat() not in html  # dates as people read them
    assert not re.search(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}", html)  # no ISO times either


def test_api_escalate_twice_and_transition(personas, report, api_client):
    feedback = report("disagree")
    client = api_client(personas["officer"])
    body = {"feedback": feedback.pk, "title": "Missed finding", "description": "d", "incident_type": "death", "aware_on": str(timezone.localdate())}
    created = client.post("/api/incidents/", body, format="json")
    assert created.status_code == 201 and created.json()["route"] == "mdr_art87" and created.json()["overdue"] is False
    again = client.post("/api/incidents/", body, format="json")
    assert again.status_code == 409 and "escalated already" in again.json()["detail"]
    moved = client.post(
        f"/api/incidents/{created.json()['id']}/transition/",
        {"status": "reported", "reported_on": str(timezone.localdate()), "authority_reference": "R-9"},
        format="json",
    )
    assert moved.status_code == 200 and moved.json()["status"] == "reported"
    assert api_client(personas["clinician_north"]).get("/api/incidents/").status_code == 403
