"""Alerts: what post-market monitoring found that a person must look at (a performance drop,
input or output drift, a prevalence shift from a run compared with its baseline; a rise in
clinician disagreement from the feedback monitor), and their handling by an officer."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from compliance.choices import AlertKind, AlertStatus
from compliance.feedback import monitor_reset
from compliance.models import Alert
from core.audit import audit_action
from core.errors import Conflict
from radtrust_engine.report import DriftFinding


def alerts_raise_for_run(*, run, findings: list[DriftFinding]) -> list[Alert]:
    """Raise an alert for each finding of a succeeded run, in the run's closing transaction
    (a redelivered run raises none twice: one alert per run, kind and subject). A finding is
    already a test rejected after the run's multiplicity adjustment
    (``radtrust_engine.baseline.baseline_comparison``); its evidence keeps that test, which the
    alert pages put in words (``compliance/_alert_test.html``)."""
    raised = []
    for finding in findings:
        with audit_action("raise"):
            raised.append(
                Alert.objects.create(
                    version_id=run.version_id,
                    deployment_id=run.deployment_id,
                    run=run,
                    baseline_run_id=run.baseline_id,
                    kind=finding.kind,
                    severity=finding.severity,
                    subject=finding.subject[:200],
                    message=finding.message,
                    evidence=finding.evidence,
                )
            )
    return raised


def alert_handle(*, actor, alert: Alert, status: str, note: str = "") -> Alert:
    """Acknowledge or resolve an alert; resolving needs a note saying what was done."""
    if status not in {AlertStatus.ACKNOWLEDGED, AlertStatus.RESOLVED}:
        raise ValidationError({"status": "An alert is acknowledged or resolved."})
    if status == AlertStatus.RESOLVED and not note.strip():
        raise ValidationError({"note": "Say what was done about the alert before resolving it."})
    with transaction.atomic():
        locked = Alert.objects.select_for_update().get(pk=alert.pk)
        if locked.status == AlertStatus.RESOLVED:
            raise Conflict("The alert is already resolved.", code="alert_resolved")
        if locked.status == status:
            raise Conflict(f"The alert is already {status}.", code="alert_unchanged")
        locked.status, locked.handled_by, locked.handled_at = status, actor, timezone.now()
        if note:
            locked.note = note[:4000]
        with audit_action(status):
            locked.save(update_fields=["status", "handled_by", "handled_at", "note"])
        if status == AlertStatus.RESOLVED and locked.kind == AlertKind.DISAGREEMENT_RISE and locked.deployment_id:
            monitor_reset(deployment_id=locked.deployment_id)  # the sequential test starts again
    return locked
