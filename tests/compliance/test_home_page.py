"""The home page across models: every model and version with its status, trust scores, open alerts
and incident deadlines, "my tasks" for the user, and the navigation each role gets."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from compliance.choices import AlertSeverity, ApprovalStatus, DossierStatus
from compliance.incident_rules import INCIDENT_TYPES
from compliance.models import Alert, Dossier, Incident, TrustException, VersionApproval


def _page(user, url=None) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(url or reverse("pages:home"))
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def busy(personas, deployed):
    """A version with a critical alert, an incident due in 3 days, a dossier officer submitted,
    an approval and an exception officer proposed."""
    version, officer = deployed["version"], personas["officer"]
    Alert.objects.create(
        version=version,
        deployment=deployed["north"],
        kind="disagreement_rise",
        severity=AlertSeverity.CRITICAL,
        subject="Disagreement",
        message="More disagreement.",
    )
    today = timezone.localdate()
    Incident.objects.create(
        version=version,
        deployment=deployed["north"],
        title="Missed finding",
        description="d",
        incident_type=next(iter(INCIDENT_TYPES)),
        medical_device=True,
        aware_on=today,
        route="mdr",
        legal_basis="MDR",
        deadline=today + timedelta(days=3),
        created_by=officer,
    )
    Dossier.objects.create(
        version=version,
        revision=1,
        author=officer,
        editors=[officer.pk],
        status=DossierStatus.IN_REVIEW,
        submitted_by=officer,
        submitted_at=timezone.now(),
        snapshot_sha256="ab" * 32,
    )
    VersionApproval.objects.create(version=version, status=ApprovalStatus.PENDING, proposed_by=officer)
    TrustException.objects.create(version=version, principle="fairness", justification="Post-market study.", granted_by=officer)
    return deployed


@pytest.mark.django_db
def test_second_officer_sees_every_task(personas, busy):
    html = _page(personas["officer2"])
    version = busy["version"]
    assert "Dossiers waiting for your review or signature" in html
    assert reverse("pages:dossier-review", args=[Dossier.objects.get().pk]) in html
    assert "Incidents to report" in html and "Missed finding" in html
    assert "Alerts to acknowledge" in html and "Critical" in html
    assert "Approvals waiting for a second officer" in html and "Trust exceptions waiting for a second officer" in html
    assert f"{version.foundation_model.name}" in html and "Deployed" in html  # the status as people say it
    assert "1 (1 critical)" in html


@pytest.mark.django_db
def test_the_author_is_not_asked_to_sign_their_own(personas, busy):
    html = _page(personas["officer"])
    assert "Dossiers waiting for your review or signature" not in html
    assert "Approvals waiting for a second officer" not in html
    assert "Incidents to report" in html  # but the deadline is theirs too


@pytest.mark.django_db
def test_engineer_sees_models_and_alerts_not_signatures(personas, busy):
    html = _page(personas["engineer"])
    assert "Models and versions" in html and busy["version"].version in html
    assert "Dossiers waiting" not in html and "Alerts to acknowledge" in html
    assert 'href="/api/docs/"' in html and ">Models<" in html  # the engineer's navigation


@pytest.mark.django_db
def test_auditor_has_no_tasks_and_no_other_providers_models_are_hidden(personas, busy):
    html = _page(personas["auditor"])
    assert "Nothing is waiting for you." in html and busy["version"].version in html
    assert "Auditor" in html and "auditor," not in html.lower().replace("auditor, ", "")


@pytest.mark.django_db
def test_clinician_goes_to_their_hospital_and_role_names_are_human(personas, deployed):
    client = Client()
    client.force_login(personas["clinician_north"])
    assert client.get(reverse("pages:home"))["Location"] == reverse("pages:clinician-home")
    html = _page(personas["clinician_north"], reverse("pages:clinician-home"))
    assert "(Clinician, North Hospital)" in html and "compliance_officer" not in html
    assert f'href="{reverse("pages:feedback-quick")}"' in html and "How is the model doing?" in html
    officer_html = _page(personas["officer"])
    assert "(Compliance officer, RadVendor GmbH)" in officer_html and "compliance_officer" not in officer_html
