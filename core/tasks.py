"""Celery tasks of core: thin wrappers that call one service."""

from __future__ import annotations

from celery import shared_task

from core.audit import audit_checkpoint_write


@shared_task(acks_late=True, soft_time_limit=120)
def audit_checkpoint() -> int | None:
    """Beat, every ``RADTRUST_AUDIT_CHECKPOINT_SECONDS``: copy the audit chain's head to the signed
    checkpoint file outside the database; the sequence number written, None when the head has not moved."""
    checkpoint = audit_checkpoint_write()
    return checkpoint.seq if checkpoint else None
