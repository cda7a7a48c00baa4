"""Celery tasks of compliance: thin wrappers that take ids and call one service."""

from __future__ import annotations

from celery import shared_task

from compliance import notification_rules
from compliance.documents import dossier_documents_render
from compliance.models import Dossier
from compliance.trust.services import trust_missed_requests, trust_overdue_requests
from compliance.trust.services import trust_recompute as recompute
from compliance.usage_logs import usage_retention_purge
from core.audit import audit_context
from validation.services import sweep_lock


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=600, time_limit=660)
def dossier_documents_render_task(dossier_id: int) -> list[int]:
    """Render a signed dossier revision's documents; safe to deliver twice (kinds already stored are kept)."""
    dossier = Dossier.objects.filter(pk=dossier_id).first()
    if dossier is None:
        return []
    with audit_context(label="worker:documents"):
        return [document.pk for document in dossier_documents_render(actor=None, dossier=dossier)]


@shared_task(acks_late=True, soft_time_limit=600)
def trust_recompute(version_id: int, trigger: str, requested_at: str) -> int | None:
    """Recompute a version's trust assessment unless a newer one covers the request (see ``compliance.trust.services``)."""
    with audit_context(label="worker:trust"):
        return recompute(version_id=version_id, trigger=trigger, requested_at=requested_at)


@shared_task(acks_late=True, soft_time_limit=300)
def trust_overdue_sweep() -> list[int]:
    """Daily: versions whose deployment's revalidation fell overdue since their last assessment are rescored."""
    with audit_context(label="worker:trust"):
        return trust_overdue_requests()


@shared_task(acks_late=True, soft_time_limit=300)
def trust_missed_sweep() -> list[int] | None:
    """Rescore versions whose newest succeeded run no assessment covers yet (see ``trust_missed_requests``);
    one sweep at a time (None when another worker is sweeping)."""
    with audit_context(label="worker:trust"), sweep_lock("compliance-trust-missed-sweep", seconds=300) as held:
        return trust_missed_requests() if held else None


@shared_task(acks_late=True, soft_time_limit=1800)
def usage_retention_purge_sweep() -> int:
    """Daily: empty the personal fields of usage events past their deployment's retention; how many."""
    with audit_context(label="worker:retention"):
        return usage_retention_purge()


@shared_task(acks_late=True, soft_time_limit=300)
def incident_deadline_reminders() -> int:
    """Beat, hourly: remind the officers of incident deadlines drawing near (once per incident and threshold)."""
    return notification_rules.incident_deadline_reminders()
