"""Celery tasks of validation: thin wrappers that take ids and call one service."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError

from core.audit import audit_context
from validation import services, sharding
from validation.mlflow_log import run_log
from validation.revalidation import revalidation_dispatch as dispatch

# A run's or a shard's task. The database refused (a claim, the closing write): the task goes back
# to the queue with backoff, for this or another worker, rather than being acknowledged with the
# work left undone.
_CLAIMED_WORK = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (DatabaseError,),
    "retry_backoff": 5,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 20,
    "soft_time_limit": settings.RADTRUST_RUN_TIME_LIMIT_SECONDS,
    "time_limit": settings.RADTRUST_RUN_TIME_LIMIT_SECONDS + 60,
}


@shared_task(**_CLAIMED_WORK)
def run_execute(self, run_id: int) -> str | None:
    """Evaluate a validation run; safe to deliver twice (the run row's claim decides who works)."""
    worker = self.request.hostname or "local"
    with audit_context(label=f"worker:{worker}"):
        return services.run_execute(run_id=run_id, worker=worker)


@shared_task(**_CLAIMED_WORK)
def run_shard_execute(self, shard_id: int) -> str | None:
    """Score one shard of a sharded run; safe to deliver twice (the shard row's claim decides who works)."""
    worker = self.request.hostname or "local"
    with audit_context(label=f"worker:{worker}"):
        return sharding.shard_execute(shard_id=shard_id, worker=worker)


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(Exception,),
    retry_backoff=5,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=20,
    soft_time_limit=300,
)
def run_log_mlflow(self, run_id: int) -> str | None:
    """Copy a finished run's evidence to MLflow; if MLflow is down the row says so and the task retries."""
    return run_log(run_id=run_id)


@shared_task(acks_late=True, soft_time_limit=120)
def run_sweep() -> dict | None:
    """Re-queue runs whose worker died and re-send what was left undone (see ``services.run_sweep``).

    One sweep at a time (None when another worker is sweeping); beat's entry lets a sweep that
    waited in the queue longer than its period expire, so sweeps do not pile up behind busy workers.
    """
    with audit_context(label="worker:sweeper"), services.sweep_lock("validation-run-sweep", seconds=120) as held:
        return services.run_sweep() if held else None


@shared_task(acks_late=True, soft_time_limit=300)
def revalidation_dispatch() -> dict:
    """Queue the scheduled revalidation of every due deployment, once per due date (see ``validation.revalidation``)."""
    with audit_context(label="worker:revalidation-dispatcher"):
        return dispatch()
