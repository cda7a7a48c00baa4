"""The incident page's hazard (issue 19 item 1) re-tried, the vigilance pages and the vigilance API
as officers, engineers and clinicians would use them."""

from __future__ import annotations

import subprocess

import pytest
from django.utils import timezone

from compliance.incidents import incident_escalate
from compliance.models import CorrectiveAction, Incident
from core.models import AuditEvent
from registry.choices import DeploymentStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def incident(personas, report):
    return incident_escalate(actor=personas["officer"], feedback=report("disagree"), title="Missed finding", description="d", incident_type="other")


def test_the_corrective_action_form_has_no_default_and_suspending_asks_first(personas, deployed, incident, client):
    client.force_login(personas["officer"])
    page = client.get(f"/incidents/{incident.pk}/").content.decode()
    assert '<option value="" selected>Choose an action</option>' in page
    assert 'value="suspend_deployment" selected' not in page
    # Submitting with no choice changes nothing.
    client.post(f"/incidents/{incident.pk}/actions/", {"description": "x"})
    assert not CorrectiveAction.objects.exists()
    # Choosing "suspend" shows what will happen to whom, and suspends nothing yet.
    asked = client.post(f"/incidents/{incident.pk}/actions/", {"kind": "suspend_deployment", "description": "Missed pneumothoraces at North."})
    text = asked.content.decode()
    assert asked.status_code == 200 and "will be suspended now" in text and "North Hospital" in text and "1 clinician there" in text
    assert "Yes, suspend it now" in text and "go back without changing anything" in text
    deployed["north"].refresh_from_db()
    assert deployed["north"].status == DeploymentStatus.ACTIVE and not CorrectiveAction.objects.exists()
    # Confirmed: suspended, audited, and the page says so.
    done = client.post(
        f"/incidents/{incident.pk}/actions/",
        {"kind": "suspend_deployment", "description": "Missed pneumothoraces at North.", "confirmed": "True"},
        follow=True,
    )
    deployed["north"].refresh_from_db()
    assert deployed["north"].status == DeploymentStatus.SUSPENDED
    assert "its clinicians see your reason" in done.content.decode() and "Lift the suspension" in done.content.decode()
    # The officer lifts it from the page, again after a confirmation.
    asked = client.post(f"/incidents/{incident.pk}/actions/", {"kind": "resume_deployment", "description": "Threshold fixed in 1.0.1."})
    assert "will be in use again now" in asked.content.decode()
    client.post(f"/incidents/{incident.pk}/actions/", {"kind": "resume_deployment", "description": "Threshold fixed in 1.0.1.", "confirmed": "True"})
    deployed["north"].refresh_from_db()
    assert deployed["north"].status == DeploymentStatus.ACTIVE
    assert set(AuditEvent.objects.filter(object_type="registry.deployment").values_list("action", flat=True)) >= {"suspend", "resume"}


def test_clinicians_at_a_suspended_deployment_see_why_and_since_when(personas, deployed, incident, client):
    from compliance.incidents import incident_action_add

    incident_action_add(
        actor=personas["officer"], incident=incident, kind="suspend_deployment", description="Missed pneumothoraces at North.", confirmed=True
    )
    client.force_login(personas["clinician_north"])
    page = client.get("/clinician/").content.decode()
    assert "No model is in use at your institution" not in page
    assert "Missed pneumothoraces at North." in page and f"{timezone.localdate():%d %b %Y}" in page


def test_the_feedback_form_has_the_suspected_serious_incident_flag(personas, deployed, client):
    client.force_login(personas["clinician_north"])
    url = f"/deployments/{deployed['north'].pk}/feedback/new/"
    page = client.get(url).content.decode()
    assert 'name="suspected_serious_incident"' in page and "I suspect a serious incident" in page
    form = client.get(url).context["form"]
    client.post(
        url,
        {
            "submission_key": form.initial["submission_key"],
            "case_reference": "CASE-5e6f",
            "model_output": "no pneumothorax 0.12",
            "agreement": "disagree",
            "error_type": "false_negative",
            "severity": "high",
            "suspected_serious_incident": "on",
        },
    )
    incident = Incident.objects.get(feedback__case_reference="CASE-5e6f")
    assert incident.triage == "pending" and incident.feedback.suspected_serious_incident


def test_officer_intake_triage_and_initial_report_in_the_pages(personas, deployed, client):
    client.force_login(personas["officer"])
    created = client.post(
        "/incidents/intake/",
        {
            "version": deployed["version"].pk,
            "deployment": deployed["north"].pk,
            "channel": "email",
            "reporter": "Vigilance contact, North",
            "received_at": timezone.localtime().strftime("%Y-%m-%dT%H:%M"),
            "title": "E-mail from North",
            "description": "A missed pneumothorax; the patient needed a chest drain.",
        },
    )
    incident = Incident.objects.get(intake__isnull=False)
    assert created.status_code == 302 and created["Location"] == f"/incidents/{incident.pk}/"
    client.post(
        f"/incidents/{incident.pk}/triage/", {"outcome": "serious", "incident_type": "serious_deterioration", "reason": "Harm to the patient."}
    )
    client.post(
        f"/incidents/{incident.pk}/reports/",
        {
            "kind": "initial",
            "submitted_on": timezone.localdate().isoformat(),
            "authority": "BfArM",
            "reference": "BF-1",
            "summary": "Initial, incomplete.",
        },
    )
    incident.refresh_from_db()
    assert (incident.triage, incident.legal_basis, incident.reported_on) == ("serious", "MDR Art. 87(1)(a), 87(5)", timezone.localdate())
    page = client.get(f"/incidents/{incident.pk}/").content.decode()
    assert "Initial report (may be incomplete)" in page and "BF-1" in page
    pdf = client.get(f"/incidents/{incident.pk}/mir.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


def test_the_mir_pdf_carries_the_fields(personas, incident, tmp_path):
    from compliance.mir import mir_pdf

    (tmp_path / "mir.pdf").write_bytes(mir_pdf(incident))
    text = subprocess.run(["pdftotext", str(tmp_path / "mir.pdf"), "-"], capture_output=True, text=True, check=True).stdout
    words = " ".join(text.split())
    assert "Date the manufacturer became aware" in words and incident.aware_on.isoformat() in words and "Not held in RadTrust" in words


def test_vigilance_api_for_each_role(personas, deployed, report, incident, api_client):
    officer, engineer, clinician = api_client(personas["officer"]), api_client(personas["engineer"]), api_client(personas["clinician_north"])
    body = {
        "version": deployed["version"].pk,
        "channel": "phone",
        "reporter": "Dr Weber",
        "title": "Call",
        "description": "Harm suspected.",
        "received_at": timezone.now().isoformat(),
    }
    assert engineer.post("/api/incidents/intake/", body, format="json").status_code == 403
    assert clinician.post("/api/incidents/intake/", body, format="json").status_code == 403
    created = officer.post("/api/incidents/intake/", body, format="json")
    assert created.status_code == 201 and created.json()["triage"] == "pending" and created.json()["deadline"] is None
    pk = created.json()["id"]
    triaged = officer.post(f"/api/incidents/{pk}/triage/", {"outcome": "serious", "incident_type": "death", "reason": "A death."}, format="json")
    assert triaged.status_code == 200 and triaged.json()["legal_basis"] == "MDR Art. 87(1)(a), 87(5)"
    report_body = {"kind": "initial", "submitted_on": str(timezone.localdate()), "authority": "BfArM", "reference": "BF-9", "summary": "Initial."}
    assert officer.post(f"/api/incidents/{pk}/reports/", report_body, format="json").status_code == 201
    assert officer.post(f"/api/incidents/{pk}/reports/", report_body, format="json").status_code == 400  # a second initial
    assert engineer.get(f"/api/incidents/{pk}/").json()["reports"][0]["reference"] == "BF-9"
    mir = api_client(personas["auditor"]).get(f"/api/incidents/{pk}/mir/")
    assert mir.status_code == 200 and mir.json()["form"].startswith("MDR Manufacturer Incident Report")
    assert clinician.get(f"/api/incidents/{pk}/mir/").status_code == 403
    # Suspending by the API needs confirmed: true.
    refused = officer.post(f"/api/incidents/{incident.pk}/corrective-actions/", {"kind": "suspend_deployment", "description": "x"}, format="json")
    assert refused.status_code == 400 and "will be suspended now" in str(refused.json())
    # Two officers to close unreported.
    proposed = officer.post(f"/api/incidents/{incident.pk}/decisions/", {"kind": "close_unreported", "reason": "Unrelated."}, format="json")
    assert proposed.status_code == 201
    decision = proposed.json()["id"]
    assert officer.post(f"/api/incidents/{incident.pk}/confirm-decision/", {"decision": decision}, format="json").status_code == 403
    second = api_client(personas["officer2"]).post(f"/api/incidents/{incident.pk}/confirm-decision/", {"decision": decision}, format="json")
    assert second.status_code == 200 and Incident.objects.get(pk=incident.pk).status == "closed"
