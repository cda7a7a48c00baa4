"""Who is told of what: saved compliance and registry records turned into notifications.

Connected by ``compliance.receivers``; each rule reads the saved row and calls
``core.notifications.notify`` with a key naming the event, so a second save of the same state
notifies no one again.

- A dossier submitted for review: the provider's officers who may sign it (not its submitter, not its editors).
- A critical alert: the provider's officers and engineers, and the officers of the hospital it concerns.
- A clinician's report of high severity: the provider's officers and the hospital's officers.
- A deployment suspended or resumed: the clinicians of that hospital.
- An incident's reporting deadline approaching (``incident_deadline_reminders``, beat): the provider's
  officers and the deployment hospital's officers, once per incident and threshold.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models.signals import post_save, pre_save
from django.urls import reverse
from django.utils import timezone

from compliance.choices import AlertSeverity, DossierStatus, Severity
from compliance.models import Alert, Dossier, Feedback, Incident
from compliance.my_tasks import OPEN_INCIDENT
from core.choices import NotificationKind, Role
from core.notifications import notify, people
from registry.choices import DeploymentStatus
from registry.models import Deployment


def _name(version) -> str:
    return f"{version.foundation_model.name} {version.version}"


def dossier_submitted(sender, instance: Dossier, raw: bool = False, **kwargs) -> None:
    if raw or instance.status != DossierStatus.IN_REVIEW:
        return
    version = instance.version
    excluded = {instance.submitted_by_id, *(instance.editors or [])}
    officers = people(role=Role.COMPLIANCE_OFFICER, institution_ids=[version.foundation_model.provider_id]).exclude(pk__in=excluded - {None})
    notify(
        recipients=officers,
        kind=NotificationKind.DOSSIER_REVIEW,
        key=f"dossier:{instance.pk}:review:{instance.snapshot_sha256[:16]}",
        title=f"Dossier of {_name(version)} (revision {instance.revision}) is waiting for your review and signature",
        body="A second compliance officer must review the submitted dossier and sign it, or send it back with a note.",
        link=reverse("pages:dossier-review", args=[instance.pk]),
    )


def alert_saved(sender, instance: Alert, raw: bool = False, **kwargs) -> None:
    if raw or instance.severity != AlertSeverity.CRITICAL:
        return
    provider = instance.version.foundation_model.provider_id
    hospital = instance.deployment.institution_id if instance.deployment_id else None
    recipients = {
        *people(role=Role.COMPLIANCE_OFFICER, institution_ids=[provider, hospital]),
        *people(role=Role.ML_ENGINEER, institution_ids=[provider]),
    }
    where = f" at {instance.deployment.institution.name}" if instance.deployment_id else ""
    notify(
        recipients=recipients,
        kind=NotificationKind.CRITICAL_ALERT,
        key=f"alert:{instance.pk}:critical",
        title=f"Critical alert on {_name(instance.version)}{where}: {instance.subject}",
        body=instance.message,
        link=reverse("pages:alert-list"),
    )


def feedback_saved(sender, instance: Feedback, raw: bool = False, **kwargs) -> None:
    if raw or instance.severity != Severity.HIGH:
        return
    provider = instance.version.foundation_model.provider_id
    notify(
        recipients=people(role=Role.COMPLIANCE_OFFICER, institution_ids=[provider, instance.institution_id]),
        kind=NotificationKind.HIGH_SEVERITY_REPORT,
        key=f"feedback:{instance.pk}:high",
        title=f"A clinician at {instance.institution.name} reported a case where {_name(instance.version)} could have harmed the patient",
        body=f"Case {instance.case_reference}: the clinician {instance.get_agreement_display().lower()}d"
        f" with the model ({instance.get_error_type_display() or 'no error type given'}). {instance.comment}".strip(),
        link=reverse("pages:feedback-list"),
    )


def deployment_status_before(sender, instance: Deployment, raw: bool = False, **kwargs) -> None:
    """Remember the stored status, so that the save after it knows whether it changed."""
    if raw or instance.pk is None:
        instance._status_before = None
        return
    instance._status_before = Deployment.objects.filter(pk=instance.pk).values_list("status", flat=True).first()


def deployment_status_changed(sender, instance: Deployment, raw: bool = False, created: bool = False, **kwargs) -> None:
    before = getattr(instance, "_status_before", None)
    if raw or created or before == instance.status:
        return
    if instance.status == DeploymentStatus.SUSPENDED:
        kind, title = NotificationKind.DEPLOYMENT_SUSPENDED, f"{_name(instance.version)} is suspended at {instance.institution.name}"
        body = "Do not rely on its output until the compliance officers resume it. The reason is on the models page."
    elif before == DeploymentStatus.SUSPENDED and instance.status == DeploymentStatus.ACTIVE:
        kind, title = NotificationKind.DEPLOYMENT_RESUMED, f"{_name(instance.version)} is back in use at {instance.institution.name}"
        body = "The compliance officers lifted the suspension; you can rely on the model again as its instructions for use say."
    else:
        return
    notify(
        recipients=people(role=Role.CLINICIAN, institution_ids=[instance.institution_id]),
        kind=kind,
        key=f"deployment:{instance.pk}:{instance.status}:{timezone.now():%Y%m%dT%H%M%S.%f}",
        title=title,
        body=body,
        link=reverse("pages:clinician-home"),
    )


def incident_deadline_reminders(*, today=None) -> int:
    """Remind the officers of open incidents whose deadline is within a threshold of
    ``RADTRUST_INCIDENT_REMINDER_DAYS`` (the nearest threshold reached, once each); how many notified."""
    today = today or timezone.localdate()
    thresholds = settings.RADTRUST_INCIDENT_REMINDER_DAYS
    horizon = today + timedelta(days=max(thresholds))
    sent = 0
    for incident in Incident.objects.select_related("version__foundation_model", "deployment").filter(
        status__in=OPEN_INCIDENT, reported_on__isnull=True, deadline__lte=horizon
    ):
        days_left = (incident.deadline - today).days
        threshold = min((t for t in thresholds if days_left <= t), default=None)
        if threshold is None:
            continue
        hospital = incident.deployment.institution_id if incident.deployment_id else None
        when = "is overdue" if days_left < 0 else ("is today" if days_left == 0 else f"is in {days_left} day{'s' if days_left != 1 else ''}")
        sent += len(
            notify(
                recipients=people(role=Role.COMPLIANCE_OFFICER, institution_ids=[incident.version.foundation_model.provider_id, hospital]),
                kind=NotificationKind.INCIDENT_DEADLINE,
                key=f"incident:{incident.pk}:due:{threshold}",
                title=f"The report of incident “{incident.title}” to the authority {when} ({incident.deadline:%d %b %Y})",
                body=f"{_name(incident.version)}: report it to the market surveillance authority by {incident.deadline:%d %b %Y}.",
                link=reverse("pages:incident-detail", args=[incident.pk]),
            )
        )
    return sent


def connect() -> None:
    post_save.connect(dossier_submitted, sender=Dossier, dispatch_uid="notify:dossier")
    post_save.connect(alert_saved, sender=Alert, dispatch_uid="notify:alert")
    post_save.connect(feedback_saved, sender=Feedback, dispatch_uid="notify:feedback")
    pre_save.connect(deployment_status_before, sender=Deployment, dispatch_uid="notify:deployment-before")
    post_save.connect(deployment_status_changed, sender=Deployment, dispatch_uid="notify:deployment")
