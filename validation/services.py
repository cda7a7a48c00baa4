"""Validation runs: create, cancel, claim, execute, sweep.

Exactly one result per run, whatever the broker does (DESIGN.md §5):

1. ``run_claim`` is one conditional UPDATE: a queued run, or a running run
   whose lease has expired, gets ``attempt + 1``, the worker's name and a
   lease. A second delivery of the same task finds the lease held (or the
   run finished) and returns quietly.
2. While it works the worker renews the lease (``RunReporter.heartbeat``),
   conditional on still holding its attempt; losing it (the sweeper gave the
   run to another worker, or the run was cancelled) stops the work.
3. Results are written in one transaction that locks the row and checks the
   attempt again, so a worker that lost its lease cannot write.
4. ``run_sweep`` re-queues runs whose lease expired (the worker died: the
   embedded broker never redelivers, Redis only after its visibility
   timeout) and fails those past ``max_attempts``; it also re-sends queued
   runs nobody claimed (a lost message). The claim makes re-sending harmless.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path, PurePosixPath

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from core.access import role_of
from core.audit import audit_action, audit_record
from core.choices import Role
from core.errors import Conflict
from radtrust.celery import site_queue
from radtrust_engine.loading import ManifestError, read_manifest
from radtrust_engine.pipeline import SuiteConfig, evaluate
from radtrust_engine.preprocessing import Preprocessing
from radtrust_engine.report import LabelResult, RunReport
from radtrust_engine.runner import load_verified, select_device
from registry.choices import ProvenanceRole, VersionStatus
from registry.models import Dataset, ModelVersion
from registry.services import artifact_root
from validation.baselines import baseline_check, baseline_load, version_baseline
from validation.choices import FailureReason, MlflowState, RunStage, RunStatus
from validation.models import ValidationRun
from validation.run_outputs import RunOutputs, run_outputs_save, run_outputs_write
from validation.signals import run_finished

log = logging.getLogger(__name__)


class RunCancelled(Exception):
    """The run was cancelled while a worker held it."""


class LeaseLost(Exception):
    """Another attempt owns the run now; this worker must stop without writing."""


# --- Create and cancel ---------------------------------------------------------------


def dataset_root(dataset: Dataset) -> Path:
    """The folder a dataset's ``location`` names, refused unless it lies under a configured data root.

    Workers only read files below ``RADTRUST_DATA_ROOTS``, so a registry user cannot
    point a run at arbitrary paths on a worker.
    """
    location = (dataset.location or "").strip()
    if not location:
        raise ValidationError({"dataset": "The dataset has no location: set the folder that holds its manifest and images."})
    path = Path(location)
    if not path.is_absolute():
        raise ValidationError({"dataset": f"The dataset location {location!r} must be an absolute folder path."})
    resolved = path.resolve()
    roots = [Path(r).resolve() for r in settings.RADTRUST_DATA_ROOTS]
    if not any(resolved.is_relative_to(root) for root in roots):
        raise ValidationError(
            {"dataset": f"The dataset location {location!r} is outside the data roots this server reads ({', '.join(map(str, roots))})."}
        )
    return resolved


def manifest_name_check(name: str) -> str:
    name = (name or "").strip()
    pure = PurePosixPath(name.replace("\\", "/"))
    if not name or pure.is_absolute() or ".." in pure.parts:
        raise ValidationError({"manifest": "Give the manifest as a path relative to the dataset's location, without '..'."})
    if not name.lower().endswith((".csv", ".parquet")):
        raise ValidationError({"manifest": "The manifest is a .csv or .parquet file."})
    return name


def run_create(
    *,
    actor,
    version: ModelVersion,
    dataset: Dataset,
    manifest: str = "manifest.csv",
    config: dict | None = None,
    on_site: bool = False,
    baseline: ValidationRun | None = None,
) -> ValidationRun:
    """Queue a validation of ``version`` on ``dataset``; the task is sent once the row is committed.

    ``on_site`` routes the run to the dataset's institution's own queue
    (``site.<code>``): its data never leaves the site. Drift is measured
    against ``baseline``, by default the version's baseline run.
    """
    if version.status == VersionStatus.RETIRED:
        raise Conflict("A retired version is not validated any more.", code="version_retired")
    if not version.output_schema.get("class_names"):
        raise ValidationError({"version": "The version has no output schema (class names and thresholds); set it before validating."})
    try:
        suite = SuiteConfig.from_dict(config)
    except ValueError as exc:
        raise ValidationError({"config": str(exc)}) from None
    if baseline is not None and (problem := baseline_check(run_version=version, baseline=baseline)):
        raise ValidationError({"baseline": f"Run {baseline.pk} cannot be this run's baseline: {problem}."})
    run = ValidationRun(
        version=version,
        dataset=dataset,
        manifest=manifest_name_check(manifest),
        config=suite.to_dict(),
        queue=site_queue(dataset.institution.code).name if on_site else "gpu",
        requested_by=actor,
        max_attempts=settings.RADTRUST_RUN_MAX_ATTEMPTS,
        baseline=baseline or version_baseline(version),
    )
    if not on_site:
        dataset_root(dataset)  # on-site data roots are the site worker's business
    run.full_clean()
    with transaction.atomic():
        run.save()
        transaction.on_commit(lambda: run_enqueue(run_id=run.pk, queue=run.queue))
    return run


def run_enqueue(*, run_id: int, queue: str) -> None:
    from validation.tasks import run_execute  # the tasks module imports this one

    run_execute.apply_async((run_id,), queue=queue)


def run_cancel(*, actor, run: ValidationRun) -> ValidationRun:
    """Cancel a queued run at once; a running one stops at its next batch or heartbeat."""
    if role_of(actor) == Role.ML_ENGINEER and run.requested_by_id != actor.pk and run.version.foundation_model.provider_id != actor.institution_id:
        raise Conflict("Only the provider's engineers or the requester may cancel this run.", code="not_yours")
    with transaction.atomic():
        locked = ValidationRun.objects.select_for_update().get(pk=run.pk)
        if locked.finished:
            raise Conflict(f"The run has already {locked.status}.", code="run_finished")
        if locked.status == RunStatus.QUEUED:
            _finish(
                locked,
                status=RunStatus.CANCELLED,
                action="cancel",
                error_reason=FailureReason.CANCELLED,
                error=f"Cancelled by {actor.username} before a worker started it.",
            )
        else:
            locked.cancel_requested = True
            with audit_action("cancel_request"):
                locked.save(update_fields=["cancel_requested"])
    return locked


def _finish(run: ValidationRun, *, status: str, action: str, error_reason: str = "", error: str = "", **fields) -> None:
    """Close a locked run (inside the caller's transaction) and audit it."""
    run.status = status
    run.stage = RunStage.DONE
    run.error_reason = error_reason
    run.error = error[:4000]
    run.finished_at = timezone.now()
    run.lease_until = None
    for name, value in fields.items():
        setattr(run, name, value)
    with audit_action(action):
        run.save(update_fields=["status", "stage", "error_reason", "error", "finished_at", "lease_until", *fields])
    run_finished.send(sender=ValidationRun, run=run)


# --- Claim, heartbeat, progress --------------------------------------------------------


def run_claim(*, run_id: int, worker: str, lease_seconds: int | None = None) -> int | None:
    """Take the run for this worker; the attempt number, or None if it is finished or held."""
    lease_seconds = lease_seconds or settings.RADTRUST_RUN_LEASE_SECONDS
    now = timezone.now()
    with transaction.atomic():
        claimed = (
            ValidationRun.objects.filter(pk=run_id, attempt__lt=F("max_attempts"), cancel_requested=False)
            .filter(Q(status=RunStatus.QUEUED) | Q(status=RunStatus.RUNNING, lease_until__lt=now))
            .update(
                status=RunStatus.RUNNING,
                stage=RunStage.VERIFYING,
                progress=0.0,
                attempt=F("attempt") + 1,
                worker=worker[:200],
                lease_until=now + timedelta(seconds=lease_seconds),
                heartbeat_at=now,
                started_at=now,
                error_reason="",
                error="",
            )
        )
        if not claimed:
            return None
        run = ValidationRun.objects.get(pk=run_id)
        audit_record(action="claim", instance=run, changes={"worker": [None, run.worker], "attempt": [run.attempt - 1, run.attempt]})
    return run.attempt


@dataclass
class RunReporter:
    """Progress, heartbeats and cancellation for one attempt, handed to the engine as its ``progress``.

    Writes are throttled (the engine calls it per batch); each write renews the
    lease only while this attempt still holds the run.
    """

    run_id: int
    attempt: int
    lease_seconds: int = field(default_factory=lambda: settings.RADTRUST_RUN_LEASE_SECONDS)
    every_seconds: float = 0.5
    _last_write: float = 0.0
    _last_heartbeat: float = field(default_factory=time.monotonic)
    _stage: str = ""

    def __call__(self, stage: str, fraction: float) -> None:
        now = time.monotonic()
        heartbeat_due = now - self._last_heartbeat >= self.lease_seconds / 3
        if stage == self._stage and now - self._last_write < self.every_seconds and not heartbeat_due:
            return
        self._stage = stage
        self._last_write = now
        self.write(stage=stage, progress=max(0.0, min(1.0, float(fraction))))

    def write(self, **fields) -> None:
        """Renew the lease with these fields; stop if the run was cancelled or taken over."""
        now = timezone.now()
        updated = ValidationRun.objects.filter(
            pk=self.run_id,
            attempt=self.attempt,
            status=RunStatus.RUNNING,
            cancel_requested=False,
        ).update(lease_until=now + timedelta(seconds=self.lease_seconds), heartbeat_at=now, **fields)
        self._last_heartbeat = time.monotonic()
        if not updated:
            current = ValidationRun.objects.filter(pk=self.run_id).values("attempt", "status", "cancel_requested").first()
            if current and current["attempt"] == self.attempt and current["cancel_requested"] and current["status"] == RunStatus.RUNNING:
                raise RunCancelled()
            raise LeaseLost()


# --- Execute ---------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_execute(*, run_id: int, worker: str) -> str | None:
    """Claim the run and evaluate it; the final status, or None if another attempt owns it.

    Every expected failure (bad manifest, unreadable images, artifact mismatch,
    bad outputs, time limit) ends the run as failed with a stable reason and a
    message that says what to fix; the worker stays up.
    """
    attempt = run_claim(run_id=run_id, worker=worker)
    if attempt is None:
        return None
    reporter = RunReporter(run_id=run_id, attempt=attempt)
    try:
        evaluation, device, manifest_sha = _evaluate(run_id, reporter)
        reporter.write(stage=RunStage.SAVING, progress=1.0)
        outputs = run_outputs_write(run_id=run_id, attempt=attempt, evaluation=evaluation)
    except RunCancelled:
        return _close(
            run_id, attempt, status=RunStatus.CANCELLED, action="cancel", error_reason=FailureReason.CANCELLED, error="Cancelled while running."
        )
    except LeaseLost:
        log.warning("Run %s: attempt %s lost its lease; another worker owns the run.", run_id, attempt)
        return None
    except ManifestError as exc:
        return _close(run_id, attempt, status=RunStatus.FAILED, action="fail", error_reason=FailureReason.BAD_MANIFEST, error=str(exc))
    except ValidationError as exc:
        return _close(run_id, attempt, status=RunStatus.FAILED, action="fail", error_reason=FailureReason.BAD_CONFIG, error="; ".join(exc.messages))
    except SoftTimeLimitExceeded:
        return _close(
            run_id,
            attempt,
            status=RunStatus.FAILED,
            action="fail",
            error_reason=FailureReason.TIME_LIMIT,
            error=f"The run exceeded its time limit of {settings.RADTRUST_RUN_TIME_LIMIT_SECONDS} s.",
        )
    except Exception as exc:
        reason, message = failure_of(run_id, exc)
        return _close(run_id, attempt, status=RunStatus.FAILED, action="fail", error_reason=reason, error=message)
    return _close(
        run_id,
        attempt,
        status=RunStatus.SUCCEEDED,
        action="succeed",
        results=evaluation.report,
        summary=run_summary(evaluation.run_report),
        timings=evaluation.timings,
        device=device,
        manifest_sha256=manifest_sha,
        mlflow_state=MlflowState.PENDING,
        outputs=outputs,
    )


def failure_of(run_id: int, exc: Exception) -> tuple[FailureReason, str]:
    """The stored reason and message of a failed evaluation: the code an engine exception carries
    (its message says what to fix), or ``internal_error`` for anything else, logged with its traceback."""
    code = getattr(exc, "reason", None)
    if code in FailureReason.values:
        return FailureReason(code), str(exc)
    log.exception("Run %s failed unexpectedly", run_id)
    return FailureReason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"


def _evaluate(run_id: int, reporter: RunReporter):
    """Verify, load and evaluate; returns the evaluation, the device and the manifest hash."""
    run = ValidationRun.objects.select_related("version__foundation_model", "dataset", "baseline__dataset").get(pk=run_id)
    version = run.version
    timings: dict[str, float] = {}

    started = time.perf_counter()
    device = select_device(prefer_gpu=settings.RADTRUST_PREFER_GPU)
    model = load_verified(artifact_root(), version.artifact_sha256, version.artifact_files, device)
    ValidationRun.objects.filter(pk=run_id).update(artifact_sha256=version.artifact_sha256, device=model.device.to_dict())
    timings["verify_and_load"] = time.perf_counter() - started

    started = time.perf_counter()
    reporter.write(stage=RunStage.MANIFEST, progress=0.0)
    try:
        preprocessing = Preprocessing.from_spec(version.preprocessing)
    except ValueError as exc:
        raise ValidationError(f"The version's preprocessing spec is invalid: {exc}") from None
    root = dataset_root(run.dataset)
    manifest_path = root / run.manifest
    if not manifest_path.is_file():
        raise ManifestError(f"manifest {run.manifest!r} not found in the dataset folder {root}")
    manifest_sha = _sha256(manifest_path)
    if run.dataset.manifest_sha256 and run.dataset.manifest_sha256 != manifest_sha:
        raise ManifestError(
            f"manifest {run.manifest!r} has sha256 {manifest_sha[:12]}..., but the datasheet records "
            f"{run.dataset.manifest_sha256[:12]}...: the data changed since it was documented"
        )
    task = version.foundation_model.task
    schema = version.output_schema
    class_names = list(schema.get("class_names", []))
    manifest = read_manifest(
        manifest_path,
        root,
        label_columns=[] if task == "segmentation" else class_names,
        class_names=class_names,
        mask_column="mask_path" if task == "segmentation" else None,
    )
    timings["manifest"] = time.perf_counter() - started

    suite = SuiteConfig.from_dict(run.config)
    evaluation = evaluate(
        model,
        manifest,
        task=task,
        class_names=class_names,
        thresholds=schema.get("thresholds", {}),
        preprocessing=preprocessing,
        config=suite,
        activation=schema.get("activation", "none"),
        progress=reporter,
        modality=version.foundation_model.modality,
        baseline=baseline_load(run) if "drift" in suite.analyses else None,
    )
    evaluation.timings = {**timings, **evaluation.timings}
    return evaluation, model.device.to_dict(), manifest_sha


def _close(
    run_id: int,
    attempt: int,
    *,
    status: str,
    action: str,
    error_reason: str = "",
    error: str = "",
    outputs: RunOutputs | None = None,
    **fields,
) -> str | None:
    """Write the outcome in one transaction, only if this attempt still holds the run (with its
    files, flags and alerts on success)."""
    with transaction.atomic():
        run = ValidationRun.objects.select_for_update().get(pk=run_id)
        if run.attempt != attempt or run.status != RunStatus.RUNNING:
            log.warning("Run %s: attempt %s finished but no longer holds the run; its outcome is dropped.", run_id, attempt)
            return None
        _finish(
            run,
            status=status,
            action=action,
            error_reason=error_reason,
            error=error,
            progress=1.0 if status == RunStatus.SUCCEEDED else run.progress,
            **fields,
        )
        if status == RunStatus.SUCCEEDED:
            run_outputs_save(run, outputs or RunOutputs())
            transaction.on_commit(lambda: _enqueue_mlflow(run_id))
    return status


def _enqueue_mlflow(run_id: int) -> None:
    from validation.tasks import run_log_mlflow  # the tasks module imports this one

    run_log_mlflow.delay(run_id)


def run_summary(report: RunReport) -> dict:
    """Headline figures of a report (``ValidationRun.summary``, read without loading the report):
    per label the overall metrics with CIs and the largest gap of each kind."""
    labels = {
        label: {"overall": {name: e.to_dict() for name, e in (result.overall.metrics or {}).items()}, "largest_gaps": _largest_gaps(result)}
        for label, result in report.results.items()
    }
    return {"n_evaluated": report.dataset.n_evaluated, "n_skipped": len(report.skipped), "labels": labels}


def _largest_gaps(result: LabelResult) -> dict[str, dict]:
    """Per kind of gap the largest defined one, with the groups it lies between and its CI."""
    largest: dict[str, dict] = {}
    for gap in sorted((g for g in result.gaps if g.value is not None), key=lambda g: -g.value):
        largest.setdefault(
            gap.kind,
            {
                "grouping": gap.grouping,
                "group_high": _listed(gap.group_high),
                "group_low": _listed(gap.group_low),
                "value": gap.value,
                "ci_low": gap.ci_low,
                "ci_high": gap.ci_high,
            },
        )
    return largest


def _listed(values: tuple[str, ...] | None) -> list[str] | None:
    return None if values is None else list(values)


# --- Sweep -----------------------------------------------------------------------------


def run_sweep(*, unclaimed_after_seconds: int | None = None) -> dict[str, list[int]]:
    """Re-queue runs whose worker died, fail those out of attempts, re-send forgotten queued runs."""
    now = timezone.now()
    unclaimed_after = timedelta(seconds=unclaimed_after_seconds if unclaimed_after_seconds is not None else settings.RADTRUST_RUN_UNCLAIMED_SECONDS)
    outcome: dict[str, list[int]] = {"requeued": [], "failed": [], "resent": []}
    expired = list(ValidationRun.objects.filter(status=RunStatus.RUNNING, lease_until__lt=now).values_list("pk", flat=True))
    for run_id in expired:
        with transaction.atomic():
            run = ValidationRun.objects.select_for_update().get(pk=run_id)
            if run.status != RunStatus.RUNNING or run.lease_until is None or run.lease_until >= now:
                continue
            lost = f"The worker {run.worker or '?'} stopped sending heartbeats (attempt {run.attempt})."
            if run.cancel_requested:
                _finish(
                    run, status=RunStatus.CANCELLED, action="cancel", error_reason=FailureReason.CANCELLED, error="Cancelled; its worker had stopped."
                )
                continue
            if run.attempt >= run.max_attempts:
                _finish(
                    run,
                    status=RunStatus.FAILED,
                    action="fail",
                    error_reason=FailureReason.WORKER_LOST,
                    error=f"{lost} No attempts left ({run.max_attempts}).",
                )
                outcome["failed"].append(run.pk)
                continue
            run.status, run.stage, run.lease_until, run.error = RunStatus.QUEUED, RunStage.QUEUED, None, lost
            with audit_action("requeue"):
                run.save(update_fields=["status", "stage", "lease_until", "error"])
            transaction.on_commit(lambda r=run: run_enqueue(run_id=r.pk, queue=r.queue))
            outcome["requeued"].append(run.pk)
    forgotten = ValidationRun.objects.filter(status=RunStatus.QUEUED, created_at__lt=now - unclaimed_after).exclude(pk__in=outcome["requeued"])
    for run_id, queue in forgotten.values_list("pk", "queue"):
        run_enqueue(run_id=run_id, queue=queue)
        outcome["resent"].append(run_id)
    return outcome


def run_mlflow_state_set(*, run_id: int, state: str, mlflow_run_id: str = "", error: str = "") -> None:
    """Record where the MLflow copy stands; operational, so not audited."""
    fields = {"mlflow_state": state, "mlflow_error": error[:2000]}
    if mlflow_run_id:
        fields["mlflow_run_id"] = mlflow_run_id
    ValidationRun.objects.filter(pk=run_id).update(**fields)


def passing_validation(version: ModelVersion) -> str | None:
    """Evidence guard for ``under_review``: a succeeded run on a dataset linked as this version's test data."""
    test_sets = version.provenance.filter(role__in=[ProvenanceRole.INTERNAL_TEST, ProvenanceRole.EXTERNAL_VALIDATION]).values("dataset_id")
    if not test_sets.exists():
        return "No validation run can count yet: link an internal-test or external-validation dataset (provenance) and validate the version on it."
    if not version.validation_runs.filter(status=RunStatus.SUCCEEDED, dataset_id__in=test_sets).exists():
        return "No succeeded validation run on this version's internal-test or external-validation data yet."
    return None
