"""Scheduled revalidation of deployed versions: which deployments are due, one run per due date.

A deployment is due when its next due date (the previous due date, or the
deployment's start, plus its cadence) has come. The dispatcher queues one run
on the newest dataset its institution stewards, and the unique constraint on
(deployment, due date) makes a second dispatcher (beat firing twice, two beat
processes) fail to insert a twin: its insert is rolled back and counted as
skipped. The run's end is written back on the deployment.
"""

from __future__ import annotations

from datetime import date, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Max
from django.utils import timezone

from compliance.audit import audit_action
from registry.choices import DeploymentStatus, RevalidationState
from registry.models import Dataset, Deployment
from validation.choices import RunStatus
from validation.models import ValidationRun


def next_due_on(deployment: Deployment) -> date:
    """The date the deployment's next scheduled revalidation falls due."""
    last = deployment.revalidation_runs.aggregate(last=Max("due_on"))["last"]
    start = last or deployment.since or timezone.localtime(deployment.created_at).date()
    return start + timedelta(days=deployment.revalidation_cadence_days)


def newest_site_dataset(deployment: Deployment) -> Dataset | None:
    """The site's newest data: the dataset its institution stewards with a location, latest collection first."""
    return (
        Dataset.objects.filter(institution_id=deployment.institution_id)
        .exclude(location="")
        .order_by(F("collection_end").desc(nulls_last=True), "-created_at", "-pk")
        .first()
    )


def _set_state(deployment: Deployment, state: str, note: str, *, ended: bool = False) -> None:
    deployment.revalidation_state = state
    deployment.revalidation_note = note[:2000]
    fields = ["revalidation_state", "revalidation_note"]
    if ended:
        deployment.revalidated_at = timezone.now()
        fields.append("revalidated_at")
    with audit_action("revalidation"):
        deployment.save(update_fields=fields)


def _queue_for(dataset: Dataset) -> str:
    """A central worker when the data lies under this server's data roots, else the site's own queue."""
    from radtrust.celery import site_queue
    from validation.services import dataset_root

    try:
        dataset_root(dataset)
    except ValidationError:
        return site_queue(dataset.institution.code).name
    return "gpu"


def _queue(deployment: Deployment, due_on: date, reason: str) -> str | ValidationRun:
    """Queue the deployment's revalidation for ``due_on`` on its site's newest data: the run, or
    ``"no_data"``, or ``"skipped"`` when a run for that date exists (another dispatcher won)."""
    from validation.engine.pipeline import SuiteConfig
    from validation.evidence import version_baseline
    from validation.services import run_enqueue

    dataset = newest_site_dataset(deployment)
    if dataset is None:
        if deployment.revalidation_state != RevalidationState.NO_DATA:
            _set_state(deployment, RevalidationState.NO_DATA, f"{reason}: {deployment.institution.code} stewards no dataset with a location.")
        return "no_data"
    run = ValidationRun(
        version=deployment.version, dataset=dataset, deployment=deployment, due_on=due_on,
        config=SuiteConfig().to_dict(), queue=_queue_for(dataset), max_attempts=settings.RADTRUST_RUN_MAX_ATTEMPTS,
        baseline=version_baseline(deployment.version),
    )
    try:
        with transaction.atomic():
            run.save()
            _set_state(deployment, RevalidationState.QUEUED, f"Run {run.pk} on {dataset.name}: {reason}.")
            transaction.on_commit(lambda r=run: run_enqueue(run_id=r.pk, queue=r.queue))
    except IntegrityError:
        return "skipped"
    return run


def revalidation_dispatch(*, today: date | None = None) -> dict[str, list[int]]:
    """Queue one revalidation run per due active deployment; ids by outcome."""
    today = today or timezone.localdate()
    outcome: dict[str, list[int]] = {"queued": [], "no_data": [], "skipped": []}
    due = Deployment.objects.filter(status=DeploymentStatus.ACTIVE).select_related("version", "institution")
    for deployment in due:
        due_on = next_due_on(deployment)
        if due_on > today:
            continue
        queued = _queue(deployment, due_on, f"revalidation due on {due_on}")
        outcome["queued" if isinstance(queued, ValidationRun) else queued].append(deployment.pk)
    return outcome


def revalidation_queue_now(*, actor, deployment: Deployment, reason: str) -> ValidationRun:
    """Revalidate a deployment today, out of schedule (an alert proposed it); once per day."""
    from radtrust.errors import Conflict

    if deployment.status != DeploymentStatus.ACTIVE:
        raise Conflict(f"The deployment is {deployment.get_status_display().lower()}; only an active deployment is revalidated.", code="not_active")
    queued = _queue(deployment, timezone.localdate(), f"{reason}, requested by {actor.username}")
    if queued == "no_data":
        raise Conflict(f"{deployment.institution.code} stewards no dataset with a location to revalidate on.", code="no_data")
    if queued == "skipped":
        raise Conflict("A revalidation of this deployment was queued today already.", code="already_queued")
    return queued


def revalidation_record_outcome(run: ValidationRun) -> None:
    """Write a finished revalidation run's end on its deployment (inside the run's closing transaction)."""
    deployment = Deployment.objects.select_for_update().get(pk=run.deployment_id)
    if run.status == RunStatus.SUCCEEDED:
        note = f"Run {run.pk} on {run.dataset.name} succeeded."
        state = RevalidationState.SUCCEEDED
    else:
        note = f"Run {run.pk} on {run.dataset.name} {run.status}: [{run.error_reason}] {run.error}"
        state = RevalidationState.FAILED
    _set_state(deployment, state, note, ended=True)
