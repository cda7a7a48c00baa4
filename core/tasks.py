"""Celery tasks of core: thin wrappers that call one service."""

from __future__ import annotations

from celery import shared_task

from core.audit import audit_checkpoint_write, audit_context, audit_pseudonymise
from core.notifications import notification_email_send


@shared_task(acks_late=True, soft_time_limit=120)
def audit_checkpoint() -> int | None:
    """Beat, every ``RADTRUST_AUDIT_CHECKPOINT_SECONDS``: copy the audit chain's head to the signed
    checkpoint file outside the database; the sequence number written, None when the head has not moved."""
    checkpoint = audit_checkpoint_write()
    return checkpoint.seq if checkpoint else None


@shared_task(acks_late=True, soft_time_limit=600)
def audit_pseudonymise_sweep() -> int:
    """Daily: empty the personal fields of audit events past ``RADTRUST_AUDIT_PERSONAL_RETENTION_DAYS``; how many."""
    with audit_context(label="worker:retention"):
        return audit_pseudonymise()


@shared_task(acks_late=True, soft_time_limit=60, autoretry_for=(OSError,), retry_backoff=30, max_retries=5)
def notification_email(notification_id: int) -> bool:
    """E-mail one notification (``core.notifications``); retried while the mail server is unreachable."""
    return notification_email_send(notification_id)
