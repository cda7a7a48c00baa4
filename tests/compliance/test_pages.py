"""The server-rendered pages through Django's test client: the same rules as the API, errors on
the form, HTML people typed shown as text. (The same journeys in a real browser: tests/browser.)"""

from __future__ import annotations

import uuid

import pytest

from compliance.models import Feedback

pytestmark = pytest.mark.django_db


def _form(deployment, **fields):
    return {
        "submission_key": str(uuid.uuid4()),
        "case_reference": "CASE-7f3a9c",
        "model_output": "pneumothorax 0.91",
        "agreement": "disagree",
        "error_type": "false_positive",
        "severity": "low",
        **fields,
    }


def test_login_page_and_role_home(client, personas):
    personas["clinician_north"].set_password("s3cret-pass-1")
    personas["clinician_north"].save()
    response = client.post("/accounts/login/", {"username": "clinician_north", "password": "s3cret-pass-1"}, follow=True)
    assert response.redirect_chain[-1][0] == "/clinician/"
    client.logout()
    assert client.get("/").url.startswith("/accounts/login/")


def test_clinician_home_lists_their_institutions_models_with_instructions(client, personas, deployed):
    client.force_login(personas["clinician_north"])
    page = client.get("/clinician/").content.decode()
    assert "Read every flagged film yourself." in page and "Weaker for patients aged 65 and over." in page
    assert f"/deployments/{deployed['north'].pk}/feedback/new/" in page and f"/deployments/{deployed['south'].pk}/" not in page
    assert "No trust assessment has been computed" in page


def test_feedback_form_saves_once_and_lists_it_escaped(client, personas, deployed):
    client.force_login(personas["clinician_north"])
    url = f"/deployments/{deployed['north'].pk}/feedback/new/"
    form = _form(deployed["north"], comment="<script>alert(1)</script>")
    assert client.post(url, form).status_code == 302
    assert client.post(url, form, follow=True).status_code == 200  # the same form again: saved once
    assert Feedback.objects.count() == 1
    page = client.get("/feedback/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page


def test_form_errors_are_shown_on_the_fields(client, personas, deployed):
    client.force_login(personas["clinician_north"])
    response = client.post(f"/deployments/{deployed['north'].pk}/feedback/new/", _form(deployed["north"], case_reference="Jan Jansen", error_type=""))
    page = response.content.decode()
    assert response.status_code == 400 and "without spaces" in page
    assert not Feedback.objects.exists()


def test_a_clinician_cannot_open_another_institutions_deployment_or_officer_pages(client, personas, deployed):
    client.force_login(personas["clinician_north"])
    assert client.get(f"/deployments/{deployed['south'].pk}/feedback/new/").status_code == 404
    assert client.post(f"/deployments/{deployed['south'].pk}/feedback/new/", _form(deployed["south"])).status_code == 404
    for url in ("/monitoring/", f"/monitoring/{deployed['north'].pk}/", "/incidents/"):
        assert client.get(url).status_code == 403, url
    assert not Feedback.objects.exists()


def test_officer_monitoring_page_shows_the_breakdowns(client, personas, deployed, report):
    for agreement in ("agree", "disagree", "partly"):
        report(agreement, explanation_helped=4, minutes_saved=2)
    client.force_login(personas["officer"])
    page = client.get(f"/monitoring/{deployed['north'].pk}/").content.decode()
    assert "Disagreement by week" in page and "False positive" in page and "The explanation helped me" in page
    assert "3 feedback reports: 1 agree, 1 partly, 1 disagree" in page
    overview = client.get("/monitoring/").content.decode()
    assert "collecting the rate at deployment" in overview


def test_officer_escalates_feedback_to_an_incident_from_the_page(client, personas, report):
    feedback = report("disagree", error_type="false_negative", severity="high")
    client.force_login(personas["officer"])
    response = client.post(
        f"/incidents/new/feedback/{feedback.pk}/",
        {
            "title": "Missed pneumothorax",
            "description": "Delayed drain.",
            "incident_type": "serious_deterioration",
            "aware_on": feedback.created_at.date().isoformat(),
        },
        follow=True,
    )
    page = response.content.decode()
    assert "Report under" in page and "MDR Art. 87" in page
    again = client.post(
        f"/incidents/new/feedback/{feedback.pk}/",
        {
            "title": "Again",
            "description": "d",
            "incident_type": "other",
            "aware_on": feedback.created_at.date().isoformat(),
        },
        follow=True,
    )
    assert "escalated already" in again.content.decode()


def test_officer_moves_an_incident_on_and_records_an_action_from_its_page(client, personas, report, deployed):
    from django.utils import timezone

    from compliance.incidents import incident_escalate

    incident = incident_escalate(
        actor=personas["officer"], feedback=report("disagree"), title="t", description="d", incident_type="other", aware_on=timezone.localdate()
    )
    client.force_login(personas["officer"])
    page = client.post(f"/incidents/{incident.pk}/transition/", {"status": "reported"}, follow=True).content.decode()
    assert "Say when the authority was told." in page
    page = client.post(
        f"/incidents/{incident.pk}/transition/",
        {
            "status": "reported",
            "reported_on": timezone.localdate().isoformat(),
            "authority_reference": "BfArM-1",
        },
        follow=True,
    ).content.decode()
    assert "Incident updated." in page and "BfArM-1" in page and "Initial report" in page
    page = client.post(f"/incidents/{incident.pk}/actions/", {"kind": "suspend_deployment", "description": "Paused at North."}).content.decode()
    assert "will be suspended now" in page  # confirmed on its own page first (test_vigilance_pages)
    page = client.post(
        f"/incidents/{incident.pk}/actions/", {"kind": "suspend_deployment", "description": "Paused at North.", "confirmed": "True"}, follow=True
    ).content.decode()
    assert "The deployment is suspended" in page and "Suspend the deployment" in page
    deployed["north"].refresh_from_db()
    assert deployed["north"].status == "suspended"
    client.force_login(personas["auditor"])
    assert client.post(f"/incidents/{incident.pk}/transition/", {"status": "closed", "closing_note": "x"}).status_code == 403
