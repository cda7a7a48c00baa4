"""Notifications: who is told of what (compliance.notification_rules), once per event, in the bell
and by e-mail (core.notifications), and the list page with mark-read."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from compliance.choices import AlertSeverity, DossierStatus
from compliance.incident_rules import INCIDENT_TYPES
from compliance.models import Alert, Dossier, Incident
from compliance.notification_rules import incident_deadline_reminders
from core.choices import NotificationKind
from core.models import Notification
from core.notifications import notification_email_send, notify
from registry.choices import DeploymentStatus


def _kinds(user) -> list[str]:
    return list(Notification.objects.filter(recipient=user).values_list("kind", flat=True))


@pytest.mark.django_db
def test_dossier_in_review_notifies_the_second_officer_only(personas, deployed):
    officer, second = personas["officer"], personas["officer2"]
    dossier = Dossier.objects.create(version=deployed["version"], revision=1, author=officer, editors=[officer.pk])
    dossier.status, dossier.submitted_by, dossier.snapshot_sha256 = DossierStatus.IN_REVIEW, officer, "ab" * 32
    dossier.save()
    dossier.save()  # the same state saved again: no second notification
    assert _kinds(second) == [NotificationKind.DOSSIER_REVIEW]
    assert _kinds(officer) == []
    assert Notification.objects.get(recipient=second).link == reverse("pages:dossier-review", args=[dossier.pk])


@pytest.mark.django_db
def test_critical_alert_notifies_officers_and_engineers_not_clinicians(personas, deployed):
    Alert.objects.create(
        version=deployed["version"],
        deployment=deployed["north"],
        kind="disagreement_rise",
        severity=AlertSeverity.CRITICAL,
        subject="Disagreement",
        message="Radiologists disagree more often.",
    )
    Alert.objects.create(version=deployed["version"], kind="disagreement_rise", severity=AlertSeverity.WARNING, subject="x", message="y")
    for name in ("officer", "officer2", "engineer"):
        assert _kinds(personas[name]) == [NotificationKind.CRITICAL_ALERT]
    assert _kinds(personas["clinician_north"]) == [] and _kinds(personas["auditor"]) == []


@pytest.mark.django_db
def test_high_severity_report_notifies_officers(personas, report):
    report("disagree", severity="high", comment="Missed pneumothorax.")
    report("disagree", case_reference="CASE-0b1c2d", severity="low")
    notes = Notification.objects.filter(recipient=personas["officer"], kind=NotificationKind.HIGH_SEVERITY_REPORT)
    assert len(notes) == 1  # the low-severity report notifies no one
    assert "could have harmed the patient" in notes[0].title and "Missed pneumothorax." in notes[0].body


@pytest.mark.django_db
def test_suspension_and_resumption_notify_that_hospitals_clinicians(personas, deployed):
    north = deployed["north"]
    north.status = DeploymentStatus.SUSPENDED
    north.save()
    north.save()
    north.status = DeploymentStatus.ACTIVE
    north.save()
    assert sorted(_kinds(personas["clinician_north"])) == sorted([NotificationKind.DEPLOYMENT_SUSPENDED, NotificationKind.DEPLOYMENT_RESUMED])
    assert _kinds(personas["clinician_south"]) == []


@pytest.mark.django_db
def test_incident_deadline_reminded_once_per_threshold(personas, deployed, settings):
    settings.RADTRUST_INCIDENT_REMINDER_DAYS = [7, 3, 1, 0]
    today = timezone.localdate()
    Incident.objects.create(
        version=deployed["version"],
        deployment=deployed["north"],
        title="Missed finding",
        description="d",
        incident_type=next(iter(INCIDENT_TYPES)),
        medical_device=True,
        aware_on=today,
        route="mdr",
        legal_basis="MDR Art. 87",
        deadline=today + timedelta(days=5),
        created_by=personas["officer"],
    )
    assert incident_deadline_reminders(today=today) == 2  # the provider's two officers, at the 7-day threshold
    assert incident_deadline_reminders(today=today) == 0  # once per threshold
    assert incident_deadline_reminders(today=today + timedelta(days=1)) == 0  # 4 days left: still the 7-day one
    assert incident_deadline_reminders(today=today + timedelta(days=2)) == 2  # 3 days left
    titles = list(Notification.objects.filter(recipient=personas["officer"]).values_list("title", flat=True))
    assert any("is in 3 days" in t for t in titles) and any("is in 5 days" in t for t in titles)


@pytest.mark.django_db
def test_email_sent_once_with_a_link(personas, settings):
    settings.RADTRUST_SITE_URL = "https://radtrust.example"
    officer = personas["officer"]
    officer.email = "officer@vendor.example"
    officer.save(update_fields=["email"])
    [note] = notify(recipients=[officer], kind=NotificationKind.CRITICAL_ALERT, key="t:1", title="Hello", body="Body", link="/alerts/")
    assert notify(recipients=[officer], kind=NotificationKind.CRITICAL_ALERT, key="t:1", title="Hello") == []
    assert notification_email_send(note.pk) is True
    assert notification_email_send(note.pk) is False
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["officer@vendor.example"] and "https://radtrust.example/alerts/" in mail.outbox[0].body


@pytest.mark.django_db
def test_bell_list_and_mark_read(personas):
    officer = personas["officer"]
    first, second = (
        notify(recipients=[officer], kind=NotificationKind.CRITICAL_ALERT, key=f"t:{i}", title=f"Alert {i}", link="/alerts/")[0] for i in (1, 2)
    )
    client = Client()
    client.force_login(officer)
    html = client.get(reverse("notifications")).content.decode()
    assert "Alert 1" in html and "Alert 2" in html and '>2<span class="skip"> unread' in html
    opened = client.post(reverse("notifications-read"), {"id": first.pk})
    assert opened["Location"] == "/alerts/"
    assert Notification.objects.filter(read_at__isnull=True).count() == 1
    other = Client()
    other.force_login(personas["officer2"])
    other.post(reverse("notifications-read"), {"id": second.pk})  # another person's notification is not theirs to mark
    assert Notification.objects.get(pk=second.pk).read_at is None
    assert "No notifications yet." in other.get(reverse("notifications")).content.decode()
    client.post(reverse("notifications-read"))
    assert not Notification.objects.filter(read_at__isnull=True).exists()
