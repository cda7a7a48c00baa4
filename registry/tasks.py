"""Celery tasks of the registry: thin wrappers that take ids and call one service."""

from __future__ import annotations

from celery import shared_task

from compliance.audit import audit_context


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(Exception,),
    retry_backoff=5,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=20,
    soft_time_limit=600,
)
def version_mirror(self, version_id: int) -> dict | None:
    """Mirror a version into MLflow; if MLflow is down the row says so and the task retries."""
    from registry.mlflow_mirror import version_mirror as mirror

    with audit_context(label=f"worker:{self.request.hostname or 'local'}"):
        result = mirror(version_id=version_id)
    return None if result is None else {"model_name": result.model_name, "mlflow_version": result.mlflow_version}
