"""Scheduled revalidation of deployed versions: which deployments are due, one revalidation per due date.

A deployment is due when its next due date (the previous due date, or the
deployment's start, plus its cadence) has come. Who revalidates is the deployment's
``revalidation_by``:

1. A central worker: the dispatcher queues one run on the newest dataset the
   institution stewards, and the unique constraint on (deployment, due date) makes a
   second dispatcher (beat firing twice, two beat processes) fail to insert a twin: its
   insert is rolled back and counted as skipped. The run's end is written back on the
   deployment. A dataset held in a PACS is resolved again at dispatch, to a new frozen
   manifest: a revalidation asks how the version does on the site's data now, and a query
   over a period that is still open (``20240101-``) holds the studies made since; the same
   instances and labels give the same manifest, by its hash. A PACS that is down or refuses
   leaves no run: the deployment's note says why, and the next beat tries again.
2. The site's agent: the dispatcher opens a one-site federated study with the
   deployment's job, to be reported within ``RADTRUST_AGENT_REVALIDATION_DAYS`` of the due
   date. The deployment's ``agent_due_on`` is the claim: a conditional update moves it to
   the due date, the database lets one dispatcher do so, and the other's update touches no
   row and is counted as skipped. The site's report is written back on the deployment as a
   run's end is; a job whose deadline passes unreported leaves the deployment overdue.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from core.audit import audit_action
from core.errors import Conflict
from radtrust.celery import site_queue
from radtrust_engine.federated_payload import SiteSummary
from radtrust_engine.pipeline import SuiteConfig
from registry.choices import CLASSIFICATION_TASKS, DeploymentStatus, RevalidationBy, RevalidationState
from registry.models import Dataset, Deployment, DicomwebSource
from validation.baselines import version_baseline
from validation.choices import FederatedJobStatus, RunStatus, StudyStatus
from validation.federated import study_create
from validation.models import FederatedJob, SiteReport, ValidationRun
from validation.services import dataset_root, dicomweb_task_check, run_enqueue, run_manifest_freeze


def next_due_on(deployment: Deployment) -> date:
    """The date the deployment's next scheduled revalidation falls due (after the latest due date
    a run or the site's agent answered, whoever ran it)."""
    last_run = deployment.revalidation_runs.aggregate(last=Max("due_on"))["last"]
    last = max((d for d in (last_run, deployment.agent_due_on) if d is not None), default=None)
    start = last or deployment.since or timezone.localtime(deployment.created_at).date()
    return start + timedelta(days=deployment.revalidation_cadence_days)


def _latest_agent_job(deployment: Deployment) -> FederatedJob | None:
    return deployment.federated_jobs.select_related("study").order_by("-study__created_at", "-pk").first()


def _missed(job: FederatedJob) -> bool:
    """The job can no longer be reported: its deadline passed or its study closed, unreported."""
    return job.status != FederatedJobStatus.REPORTED and (job.study.status == StudyStatus.CLOSED or job.study.deadline <= timezone.now())


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def revalidation_overdue_from(deployment: Deployment, *, today: date | None = None) -> datetime | None:
    """When the deployment's revalidation fell overdue, or None while it is on schedule: its next
    due date has passed with nothing dispatched (overdue from the day after), or (site agent) its
    latest job's deadline passed without a report (overdue from the deadline)."""
    today = today or timezone.localdate()
    due = next_due_on(deployment)
    if due < today:
        return _day_start(due + timedelta(days=1))
    if deployment.revalidation_by == RevalidationBy.SITE_AGENT:
        job = _latest_agent_job(deployment)
        if job is not None and _missed(job):
            return job.study.deadline
    return None


def newest_site_dataset(deployment: Deployment) -> Dataset | None:
    """The site's newest data: the dataset its institution stewards with a location or in a PACS
    (for a classifier only: a PACS dataset's labels are per study or instance), latest collection first."""
    readable = ~Q(location="")
    if deployment.version.foundation_model.task in CLASSIFICATION_TASKS:
        readable |= Q(dicomweb__isnull=False)
    return (
        Dataset.objects.filter(institution_id=deployment.institution_id)
        .filter(readable)
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
    """A central worker when the data's folder is here (under this server's data roots, and present)
    or the data is in a PACS (which this server resolved it in), else the site's own queue. The roots
    also list the folders site workers read (a location is refused outside them), so being under a
    root alone does not say the data is on this machine."""
    if _in_pacs(dataset):
        return "gpu"
    try:
        here = dataset_root(dataset).is_dir()
    except ValidationError:
        here = False
    return "gpu" if here else site_queue(dataset.institution.code).name


def _queue(deployment: Deployment, due_on: date, reason: str) -> str | ValidationRun:
    """Queue the deployment's revalidation for ``due_on`` on its site's newest data: the run, or
    ``"no_data"``, or ``"skipped"`` when a run for that date exists (another dispatcher won)."""
    dataset = newest_site_dataset(deployment)
    if dataset is None:
        if deployment.revalidation_state != RevalidationState.NO_DATA:
            _set_state(
                deployment, RevalidationState.NO_DATA, f"{reason}: {deployment.institution.code} stewards no dataset with a location or in a PACS."
            )
        return "no_data"
    run = ValidationRun(
        version=deployment.version,
        dataset=dataset,
        deployment=deployment,
        due_on=due_on,
        config=SuiteConfig().to_dict(),
        queue=_queue_for(dataset),
        max_attempts=settings.RADTRUST_RUN_MAX_ATTEMPTS,
        baseline=version_baseline(deployment.version),
    )
    try:
        with transaction.atomic():
            if _in_pacs(dataset):
                dicomweb_task_check(deployment.version)
                run_manifest_freeze(run=run)
            run.save()
            _set_state(deployment, RevalidationState.QUEUED, f"Run {run.pk} on {dataset.name}: {reason}.")
            transaction.on_commit(lambda r=run: run_enqueue(run_id=r.pk, queue=r.queue))
    except IntegrityError:
        return "skipped"
    except ValidationError as exc:  # the PACS could not resolve the query: nothing stored, the next beat tries again
        note = f"{reason}: no run on {dataset.name}: {'; '.join(exc.messages)}"[:2000]
        if (deployment.revalidation_state, deployment.revalidation_note) != (RevalidationState.FAILED, note):
            _set_state(deployment, RevalidationState.FAILED, note)
        return "no_data"
    return run


def _in_pacs(dataset: Dataset) -> bool:
    return DicomwebSource.objects.filter(dataset=dataset).exists()


def _agent_deadline(due_on: date, today: date) -> datetime:
    """The end of the grace's last day, counted from the due date or, when dispatched late, from today."""
    last_day = max(due_on, today) + timedelta(days=settings.RADTRUST_AGENT_REVALIDATION_DAYS)
    return _day_start(last_day + timedelta(days=1))


def _not_opened(deployment: Deployment, reason: str, why: str) -> str:
    note = f"{reason}: the site's study could not be opened: {why}"[:2000]
    if (deployment.revalidation_state, deployment.revalidation_note) != (RevalidationState.FAILED, note):
        _set_state(deployment, RevalidationState.FAILED, note)
    return "no_data"


def hand_to_agent(deployment: Deployment, due_on: date, reason: str, *, today: date) -> str | FederatedJob:
    """Open the deployment's revalidation for ``due_on`` as a one-site study for its site's agent,
    on behalf of whoever planned the deployment (else registered the version): the job, or
    ``"skipped"`` when another dispatcher claimed that due date, or ``"no_data"`` when the study
    cannot be opened (the reason is noted on the deployment; the next beat tries again)."""
    owner = deployment.created_by or deployment.version.created_by
    if owner is None:
        return _not_opened(deployment, reason, "neither the deployment nor its version records who created it, so no one can open the study")
    deadline = _agent_deadline(due_on, today)
    name = f"Scheduled revalidation of {deployment.version} at {deployment.institution.code}, due {due_on}"[:200]
    try:
        with transaction.atomic():
            claimed = Deployment.objects.filter(Q(agent_due_on__isnull=True) | Q(agent_due_on__lt=due_on), pk=deployment.pk).update(
                agent_due_on=due_on
            )
            if not claimed:
                return "skipped"
            study = study_create(
                actor=owner,
                version=deployment.version,
                name=name,
                spec={},
                deadline=deadline,
                institutions=[deployment.institution],
                deployment=deployment,
            )
            job = study.jobs.get()
            deployment.agent_due_on = due_on
            _set_state(
                deployment,
                RevalidationState.QUEUED,
                f"Job {job.pk} of study {study.pk} for {deployment.institution.code}'s agent, to report by {deadline:%Y-%m-%d %H:%M}: {reason}.",
            )
    except ValidationError as exc:
        return _not_opened(deployment, reason, "; ".join(exc.messages))
    except Conflict as exc:
        return _not_opened(deployment, reason, str(exc))
    return job


def _note_missed(deployment: Deployment) -> None:
    """Once the site's latest job can no longer be reported, its revalidation has ended unanswered."""
    if deployment.revalidation_state != RevalidationState.QUEUED:
        return
    job = _latest_agent_job(deployment)
    if job is not None and _missed(job):
        _set_state(
            deployment,
            RevalidationState.FAILED,
            f"Job {job.pk} of study {job.study_id}: {deployment.institution.code}'s agent did not report by {job.study.deadline:%Y-%m-%d %H:%M}.",
            ended=True,
        )


def revalidation_dispatch(*, today: date | None = None) -> dict[str, list[int]]:
    """Queue one revalidation (a central run or the site agent's job) per due active deployment;
    ids by outcome: queued, no_data (nothing could be queued; the deployment's note says why), skipped."""
    today = today or timezone.localdate()
    outcome: dict[str, list[int]] = {"queued": [], "no_data": [], "skipped": []}
    active = Deployment.objects.filter(status=DeploymentStatus.ACTIVE).select_related("version__created_by", "institution", "created_by")
    for deployment in active:
        by_agent = deployment.revalidation_by == RevalidationBy.SITE_AGENT
        if by_agent:
            _note_missed(deployment)
        due_on = next_due_on(deployment)
        if due_on > today:
            continue
        reason = f"revalidation due on {due_on}"
        queued = hand_to_agent(deployment, due_on, reason, today=today) if by_agent else _queue(deployment, due_on, reason)
        outcome[queued if isinstance(queued, str) else "queued"].append(deployment.pk)
    return outcome


def revalidation_queue_now(*, actor, deployment: Deployment, reason: str) -> ValidationRun:
    """Revalidate a deployment today, out of schedule (an alert proposed it); once per day."""
    if deployment.status != DeploymentStatus.ACTIVE:
        raise Conflict(f"The deployment is {deployment.get_status_display().lower()}; only an active deployment is revalidated.", code="not_active")
    queued = _queue(deployment, timezone.localdate(), f"{reason}, requested by {actor.username}")
    if queued == "no_data" and deployment.revalidation_state == RevalidationState.FAILED:
        raise Conflict(deployment.revalidation_note, code="pacs_unresolved")
    if queued == "no_data":
        raise Conflict(f"{deployment.institution.code} stewards no dataset with a location or in a PACS to revalidate on.", code="no_data")
    if queued == "skipped":
        raise Conflict("A revalidation of this deployment was queued today already.", code="already_queued")
    return queued


def revalidation_record_outcome(sender, run: ValidationRun, **kwargs) -> None:
    """Write a finished revalidation run's end on its deployment (a receiver of ``run_finished``,
    inside the run's closing transaction)."""
    if not run.deployment_id:
        return  # not a revalidation
    deployment = Deployment.objects.select_for_update().get(pk=run.deployment_id)
    if run.status == RunStatus.SUCCEEDED:
        note = f"Run {run.pk} on {run.dataset.name} succeeded."
        state = RevalidationState.SUCCEEDED
    else:
        note = f"Run {run.pk} on {run.dataset.name} {run.status}: [{run.error_reason}] {run.error}"
        state = RevalidationState.FAILED
    _set_state(deployment, state, note, ended=True)


def _site_figures(report: SiteReport) -> str:
    """The report's overall AUROC per label, as the site computed it, for the deployment's note."""
    overall = SiteSummary.from_dict(report.payload).stratum()
    if overall is None or overall.suppressed:
        return "its overall stratum is suppressed"
    figures = []
    for label, block in overall.labels.items():
        auroc = None if block.suppressed else block.metrics.get("auroc")
        if auroc is not None and auroc.value is not None:
            ci = f" ({auroc.ci_low:.3f}-{auroc.ci_high:.3f})" if auroc.ci_low is not None and auroc.ci_high is not None else ""
            figures.append(f"{label} AUROC {auroc.value:.3f}{ci}")
    return f"{overall.n_patients} patients" + (f", {'; '.join(figures)}" if figures else "")


def revalidation_record_site_report(sender, job: FederatedJob, **kwargs) -> None:
    """Write the site agent's report of a scheduled revalidation on its deployment, as a run's end is
    (a receiver of ``site_report_received``, inside ``report_submit``'s transaction)."""
    if not job.deployment_id:
        return  # a study job, not a revalidation
    deployment = Deployment.objects.select_for_update().get(pk=job.deployment_id)
    report = SiteReport.objects.get(job_id=job.pk)
    _set_state(
        deployment,
        RevalidationState.SUCCEEDED,
        f"Job {job.pk} of study {job.study_id}: {deployment.institution.code}'s agent reported "
        f"(approved by {report.approved_by}): {_site_figures(report)}.",
        ended=True,
    )
