"""Celery tasks of the registry: thin wrappers that take ids and call one service."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from core.audit import audit_context
from radtrust_engine.artifacts import ArtifactError
from registry.mlflow_mirror import foundation_model_lifecycle_to_mlflow
from registry.mlflow_mirror import version_mirror as mirror
from registry.selectors import versions_awaiting_mirror


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(Exception,),
    # A stored artifact that fails its hash check will not heal by waiting: fail at once, visibly.
    dont_autoretry_for=(ArtifactError,),
    retry_backoff=5,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=20,
    soft_time_limit=600,
)
def version_mirror(self, version_id: int) -> dict | None:
    """Mirror a version into MLflow; if MLflow is down the row says so and the task retries."""
    with audit_context(label=f"worker:{self.request.hostname or 'local'}"):
        result = mirror(version_id=version_id)
    return None if result is None else {"model_name": result.model_name, "mlflow_version": result.mlflow_version}


@shared_task(
    acks_late=True, autoretry_for=(Exception,), retry_backoff=5, retry_backoff_max=600, retry_jitter=True, max_retries=20, soft_time_limit=300
)
def lifecycle_mirror(foundation_model_id: int) -> int:
    """Bring a foundation model's MLflow tags, trust scores and lifecycle aliases up to date."""
    return foundation_model_lifecycle_to_mlflow(foundation_model_id)


@shared_task(acks_late=True, soft_time_limit=120)
def mirror_sweep(stale_after_seconds: int = 300) -> int:
    """Re-queue the mirror of versions still not in MLflow (a lost message, a broker that was down)."""
    ids = list(versions_awaiting_mirror(older_than=timezone.now() - timedelta(seconds=stale_after_seconds)).values_list("pk", flat=True))
    for version_id in ids:
        version_mirror.delay(version_id)
    return len(ids)
