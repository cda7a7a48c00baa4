"""Validation runs: create, cancel, claim, execute, sweep.

Exactly one result per run, whatever the broker does (DESIGN.md §5):

1. ``run_claim`` is one conditional UPDATE: a queued run, or a running run
   whose lease has expired, gets ``attempt + 1``, the worker's name and a
   lease. A second delivery of the same task finds the lease held (or the
   run finished) and returns quietly.
2. While it works a thread of the worker renews the lease every third of it
   (``RunReporter.heartbeats``), whatever the evaluation is doing, and looks
   for a cancel in between; losing the lease (the sweeper gave the run to
   another worker) or a cancel stops the evaluation at its next progress call.
3. Results are written in one transaction that locks the row and checks the
   attempt again, so a worker that lost its lease cannot write.
4. ``run_sweep`` re-queues runs whose lease expired (the worker died: the
   embedded broker never redelivers, Redis only after its visibility
   timeout) and fails those past ``max_attempts``; it also re-sends queued
   runs nobody claimed and MLflow copies left undone (a lost message, a broker
   that was down), each once per period from its last send. The claims make
   re-sending harmless.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path, PurePosixPath

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connections, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from core.access import role_of
from core.audit import audit_action, audit_record
from core.choices import Role
from core.errors import Conflict
from radtrust.celery import site_queue
from radtrust_engine.loading import ManifestError, manifest_file, read_manifest
from radtrust_engine.pipeline import SuiteConfig, evaluate
from radtrust_engine.preprocessing import Preprocessing
from radtrust_engine.report import LabelResult, RunReport
from radtrust_engine.runner import load_verified, select_device
from radtrust_engine.task_spec import GROUND_TRUTH_COLUMNS
from registry.choices import CLASSIFICATION_TASKS, ProvenanceRole, VersionStatus
from registry.dicomweb import DICOMWEB_MANIFEST, dicomweb_fetch, dicomweb_manifest_freeze, dicomweb_manifest_read
from registry.models import Dataset, DicomwebManifest, DicomwebSource, ModelVersion
from registry.services import artifact_root, data_use_check
from registry.validators import data_folder
from validation.baselines import baseline_check, baseline_load, comparator_check, comparator_load, version_baseline
from validation.choices import FailureReason, MlflowState, RunStage, RunStatus
from validation.models import ReportRunUpload, SweepLock, ValidationRun
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
    point a run at arbitrary paths on a worker. The registry refuses such a location when
    it is stored (``registry.validators.data_folder``, the same rule); this checks again
    because the roots, or a symbolic link on the way, may have changed since.
    """
    location = (dataset.location or "").strip()
    if not location:
        raise ValidationError({"dataset": "The dataset has no location: set the folder that holds its manifest and images."})
    try:
        return data_folder(location)
    except ValidationError as exc:
        raise ValidationError({"dataset": exc.messages}) from None


def manifest_name_check(name: str) -> str:
    name = (name or "").strip()
    pure = PurePosixPath(name.replace("\\", "/"))
    if not name or pure.is_absolute() or ".." in pure.parts:
        raise ValidationError({"manifest": "Give the manifest as a path relative to the dataset's location, without '..'."})
    if not name.lower().endswith((".csv", ".parquet")):
        raise ValidationError({"manifest": "The manifest is a .csv or .parquet file."})
    return name


def documented_manifest(dataset: Dataset, name: str) -> tuple[Path, Path, str]:
    """The dataset's root, the manifest's path and its sha256; ``ManifestError`` when the manifest
    changed since the datasheet recorded its hash (a run must evaluate the data that was documented)."""
    root = dataset_root(dataset)
    path = manifest_file(root, name)
    sha = _sha256(path)
    if dataset.manifest_sha256 and dataset.manifest_sha256 != sha:
        raise ManifestError(
            f"manifest {name!r} has sha256 {sha[:12]}..., but the datasheet records {dataset.manifest_sha256[:12]}...: "
            "the data changed since it was documented; document the data again first"
        )
    return root, path, sha


def run_create(
    *,
    actor,
    version: ModelVersion,
    dataset: Dataset,
    manifest: str = "manifest.csv",
    config: dict | None = None,
    on_site: bool = False,
    baseline: ValidationRun | None = None,
    comparator: ValidationRun | None = None,
) -> ValidationRun:
    """Queue a validation of ``version`` on ``dataset``; the task is sent once the row is committed.

    ``on_site`` routes the run to the dataset's institution's own queue
    (``site.<code>``): its data never leaves the site. Drift is measured
    against ``baseline``, by default the version's baseline run; the data-efficiency curves
    against ``comparator``'s embeddings (another version's run on the same dataset). Another
    institution's dataset needs its steward's active data-use grant to the
    version's provider for a validating purpose (``data_use_check``).
    """
    if version.status == VersionStatus.RETIRED:
        raise Conflict("A retired version is not validated any more.", code="version_retired")
    data_use_check(dataset=dataset, grantee_id=version.foundation_model.provider_id)
    if not version.output_schema.get("class_names"):
        raise ValidationError({"version": "The version has no output schema (class names and thresholds); set it before validating."})
    try:
        suite = SuiteConfig.from_dict(config)
    except ValueError as exc:
        raise ValidationError({"config": str(exc)}) from None
    if baseline is not None and (problem := baseline_check(run_version=version, baseline=baseline)):
        raise ValidationError({"baseline": f"Run {baseline.pk} cannot be this run's baseline: {problem}."})
    if comparator is not None and (problem := comparator_check(dataset_id=dataset.pk, comparator=comparator)):
        raise ValidationError({"comparator": f"Run {comparator.pk} cannot be this run's comparator: {problem}."})
    pacs = DicomwebSource.objects.filter(dataset=dataset).exists()
    if pacs:
        dicomweb_task_check(version)
    run = ValidationRun(
        version=version,
        dataset=dataset,
        manifest=DICOMWEB_MANIFEST if pacs else manifest_name_check(manifest),
        config=suite.to_dict(),
        queue=site_queue(dataset.institution.code).name if on_site else "gpu",
        requested_by=actor,
        max_attempts=settings.RADTRUST_RUN_MAX_ATTEMPTS,
        baseline=baseline or version_baseline(version),
        comparator=comparator,
    )
    if not on_site and not pacs:
        dataset_root(dataset)  # on-site data roots are the site worker's business
    run.full_clean()
    with transaction.atomic():
        if pacs:
            run_manifest_freeze(run=run)
        run.save()
        # robust: a broker that is down must not fail the request; the sweeper sends the run later.
        transaction.on_commit(lambda: run_enqueue(run_id=run.pk, queue=run.queue), robust=True)
    return run


def dicomweb_task_check(version: ModelVersion) -> None:
    """A dataset in a PACS carries labels per study or instance: it validates classifiers only."""
    if version.foundation_model.task not in CLASSIFICATION_TASKS:
        raise ValidationError({"dataset": "A dataset in a PACS carries labels per study or instance: it validates classifiers, not masks or boxes."})


def run_manifest_freeze(*, run: ValidationRun) -> None:
    """Resolve the run's PACS dataset now, to the instances this run will read and no others, and
    name that frozen manifest on the (unsaved) run. Call it inside the transaction that saves the
    run: a refusal (the PACS down or refusing, a query that matches nothing or too much, a class
    with no label column) is a field error on ``dataset``, and nothing is stored."""
    dataset, version = run.dataset, run.version
    frozen = dicomweb_manifest_freeze(dataset=dataset)
    missing = [name for name in version.output_schema["class_names"] if name not in frozen.content["label_names"]]
    if missing:
        raise ValidationError({"dataset": f"The labels table of {dataset.name} has no column for the class(es) {', '.join(missing)}."})
    run.manifest, run.manifest_sha256 = DICOMWEB_MANIFEST, frozen.sha256


def run_enqueue(*, run_id: int, queue: str, now: datetime | None = None) -> None:
    """Send the run to its queue and note when (``sent_at``): the sweeper re-sends from that time."""
    from validation.tasks import run_execute  # the tasks module imports this one

    run_execute.apply_async((run_id,), queue=queue)
    ValidationRun.objects.filter(pk=run_id).update(sent_at=now or timezone.now())


def run_cancel(*, actor, run: ValidationRun) -> ValidationRun:
    """Cancel a queued run at once; a running one stops once its worker's heartbeat thread sees the request."""
    if role_of(actor) == Role.ML_ENGINEER and run.requested_by_id != actor.pk and run.version.foundation_model.provider_id != actor.institution_id:
        raise Conflict("Only the provider's engineers or the requester may cancel this run.", code="not_yours")
    with transaction.atomic():
        locked = ValidationRun.objects.select_for_update().get(pk=run.pk)
        if locked.finished:
            raise Conflict(f"The run has already {locked.status}.", code="run_finished")
        if locked.status == RunStatus.QUEUED:
            run_finish(
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


def run_finish(run: ValidationRun, *, status: str, action: str, error_reason: str = "", error: str = "", **fields) -> None:
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

    Progress writes are throttled (the engine calls it per batch) and renew the lease. The lease
    must not depend on them: an analysis can run for many minutes between two progress calls.
    So while ``heartbeats()`` is open a thread of the worker renews the lease every third of it
    and looks for a cancel every ``cancel_check_seconds`` in between. When it finds the run
    cancelled or given to another attempt it sets ``stop``, and the next progress call raises.
    """

    run_id: int
    attempt: int
    lease_seconds: int = field(default_factory=lambda: settings.RADTRUST_RUN_LEASE_SECONDS)
    every_seconds: float = 0.5
    cancel_check_seconds: float = 2.0
    stop: threading.Event = field(default_factory=threading.Event)
    _stopped_by: Exception | None = None
    _last_write: float = 0.0
    _stage: str = ""

    def __call__(self, stage: str, fraction: float) -> None:
        if self.stop.is_set():
            raise self._stopped_by
        now = time.monotonic()
        if stage == self._stage and now - self._last_write < self.every_seconds:
            return
        self._stage = stage
        self._last_write = now
        self.write(stage=stage, progress=max(0.0, min(1.0, float(fraction))))

    def write(self, **fields) -> None:
        """Renew the lease with these fields; stop if the run was cancelled or taken over."""
        if not self._renew(**fields):
            raise self._why_not_held()

    def _held(self):
        """The run, while this attempt holds it and nobody asked to cancel it."""
        return ValidationRun.objects.filter(pk=self.run_id, attempt=self.attempt, status=RunStatus.RUNNING, cancel_requested=False)

    def _renew(self, **fields) -> bool:
        now = timezone.now()
        return bool(self._held().update(lease_until=now + timedelta(seconds=self.lease_seconds), heartbeat_at=now, **fields))

    def _why_not_held(self) -> Exception:
        current = ValidationRun.objects.filter(pk=self.run_id).values("attempt", "status", "cancel_requested").first()
        if current and current["attempt"] == self.attempt and current["cancel_requested"] and current["status"] == RunStatus.RUNNING:
            return RunCancelled()
        return LeaseLost()

    @contextmanager
    def heartbeats(self) -> Iterator[None]:
        """Keep the lease alive from a thread of this process while the block runs; the thread is
        stopped and joined when the block ends, before the outcome is written."""
        if transaction.get_connection().in_atomic_block:
            # The thread's own connection cannot see a run the caller has not committed (a test, a
            # shell session inside atomic()); there the progress writes renew the lease.
            yield
            return
        done = threading.Event()
        thread = threading.Thread(target=self._beat, args=(done,), name=f"run-{self.run_id}-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def _beat(self, done: threading.Event) -> None:
        """The heartbeat thread (see the class docstring). A database error is logged and tried
        again at the next tick: the lease has two thirds of its length to spare."""
        renew_every = self.lease_seconds / 3
        renew_at = time.monotonic() + renew_every
        try:
            while not done.wait(min(self.cancel_check_seconds, renew_every)):
                try:
                    if time.monotonic() >= renew_at:
                        held = self._renew()
                        renew_at = time.monotonic() + renew_every
                    else:
                        held = self._held().exists()
                    if not held:
                        self._stopped_by = self._why_not_held()
                        self.stop.set()
                        return
                except DatabaseError:
                    log.warning("Run %s: a heartbeat of attempt %s failed; trying again.", self.run_id, self.attempt, exc_info=True)
        finally:
            connections.close_all()  # this thread's own connections


def run_claim_failure_note(*, run_id: int, worker: str, error: DatabaseError) -> None:
    """Say on the queued run why a worker could not take it, if the database takes that write
    (it may be the one that is down). The details stay in the worker's log: a database error
    can name hosts and users."""
    log.error("Run %s: worker %s could not claim it: %s", run_id, worker, error)
    with suppress(DatabaseError):
        ValidationRun.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(
            error=f"Worker {worker[:200]} could not claim the run: the database refused ({type(error).__name__}). "
            "The task is sent again; the worker's log has the details."
        )


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
    message that says what to fix; the worker stays up. A claim the database
    refuses is noted on the run when it can be and raised, so that the task is
    sent again rather than acknowledged with the run still queued.
    """
    try:
        attempt = run_claim(run_id=run_id, worker=worker)
    except DatabaseError as exc:
        run_claim_failure_note(run_id=run_id, worker=worker, error=exc)
        raise
    if attempt is None:
        return None
    reporter = RunReporter(run_id=run_id, attempt=attempt)
    try:
        with reporter.heartbeats():
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
    (its message says what to fix), or ``internal_error`` for anything else, logged with its traceback.

    An unexpected exception's own message stays in the worker's log: it may quote a file's path on
    the worker (an ``OSError``) or a value read from a file, and every reader of the run sees its error.
    """
    code = getattr(exc, "reason", None)
    if code in FailureReason.values:
        return FailureReason(code), str(exc)
    log.exception("Run %s failed unexpectedly", run_id)
    return FailureReason.INTERNAL_ERROR, f"An unexpected {type(exc).__name__} stopped the run; the worker's log has the details."


def _evaluate(run_id: int, reporter: RunReporter, shard=None):
    """Verify, load and evaluate; returns the evaluation, the device and the manifest hash. A run
    of uploaded generated reports runs no model: its files are evaluated (``validation.uploaded_reports``).

    A run above ``RADTRUST_SHARD_MIN_IMAGES`` is scored in shards by every worker on its queue
    (``validation.sharding``); given one of its ``shard``s, this loads the same model, scores that
    shard's own cases alone (never reading the whole manifest) and returns its status.
    """
    from validation import sharding  # sharding builds on this module's claims and reporters

    run = ValidationRun.objects.select_related("version__foundation_model", "dataset", "baseline__dataset").get(pk=run_id)
    if shard is None and ReportRunUpload.objects.filter(run_id=run_id).exists():
        from validation.uploaded_reports import report_run_evaluate  # it builds on this module's reporters and sends

        return report_run_evaluate(run, reporter), {}, run.manifest_sha256
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
    task_spec = version.task_spec
    task = task_spec.task
    schema = version.output_schema
    class_names = list(schema.get("class_names", []))
    suite = SuiteConfig.from_dict(run.config)
    if shard is not None:
        return sharding.shard_score(shard=shard, model=model, preprocessing=preprocessing, suite=suite, progress=reporter)
    frozen = instances = None
    if run.manifest == DICOMWEB_MANIFEST:
        frozen, (manifest, instances) = _dicomweb_manifest(run, class_names)
        manifest_sha = run.manifest_sha256
    else:
        root, manifest_path, manifest_sha = documented_manifest(run.dataset, run.manifest)
        manifest = read_manifest(
            manifest_path,
            root,
            label_columns=[] if task in GROUND_TRUTH_COLUMNS else class_names,
            class_names=class_names,
            mask_column=GROUND_TRUTH_COLUMNS.get(task),
        )
    timings["manifest"] = time.perf_counter() - started
    scored = sharding.run_scored(
        run=run, reporter=reporter, worker=run.worker, model=model, manifest=manifest, preprocessing=preprocessing, suite=suite, instances=instances
    )
    if frozen is not None:  # after the shards are sent, so that other workers need not wait for this fetch
        started = time.perf_counter()  # the report reads every header: the whole set into this worker's cache
        dicomweb_fetch(
            frozen=frozen, instances=instances, max_unreadable_share=suite.max_unreadable_share, progress=partial(reporter, RunStage.MANIFEST)
        )
        timings["manifest"] += time.perf_counter() - started
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
        embedding_output=schema.get("embedding_output"),
        comparator=comparator_load(run) if "data_efficiency" in suite.analyses else None,
        task_spec=task_spec,
        scored=scored,
        loader_processes=settings.RADTRUST_LOADER_PROCESSES,
    )
    evaluation.timings = {**timings, **evaluation.timings}
    return evaluation, model.device.to_dict(), manifest_sha


def _dicomweb_manifest(run: ValidationRun, class_names: list[str]):
    """The run's frozen DICOMweb manifest row, and the engine's manifest over the cache (``registry.dicomweb``)
    with the labels table's columns in the order of the version's classes, with its instances, one per row.
    The files are fetched once a sharded run's shards are sent (``dicomweb_fetch``)."""
    frozen = DicomwebManifest.objects.get(dataset=run.dataset, sha256=run.manifest_sha256)
    missing = [name for name in class_names if name not in frozen.content["label_names"]]
    if missing:
        raise ManifestError(f"the labels table has no column for the class(es) {', '.join(map(repr, missing))} of the version's output schema")
    manifest, instances = dicomweb_manifest_read(frozen=frozen)
    keep = [manifest.label_names.index(name) for name in class_names]
    return frozen, (replace(manifest, label_names=tuple(class_names), labels=manifest.labels[:, keep]), instances)


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
        run_finish(
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
            # robust: with the broker down the run still succeeds; the sweeper sends its copy later.
            transaction.on_commit(lambda: run_mlflow_enqueue(run_id=run_id), robust=True)
    return status


def run_mlflow_enqueue(*, run_id: int, now: datetime | None = None) -> None:
    """Send the run's MLflow copy and note when (``mlflow_sent_at``): the sweeper re-sends from that time."""
    from validation.tasks import run_log_mlflow  # the tasks module imports this one

    run_log_mlflow.delay(run_id)
    ValidationRun.objects.filter(pk=run_id).update(mlflow_sent_at=now or timezone.now())


def run_summary(report: RunReport) -> dict:
    """Headline figures of a report (``ValidationRun.summary``, read without loading the report):
    per label the overall metrics with CIs and the largest gap of each kind; for generated reports
    the per-report rates with their intervals and the reference they were compared with."""
    labels = {
        label: {"overall": {name: e.to_dict() for name, e in (result.overall.metrics or {}).items()}, "largest_gaps": _largest_gaps(result)}
        for label, result in report.results.items()
    }
    summary = {"n_evaluated": report.dataset.n_evaluated, "n_skipped": len(report.skipped), "labels": labels}
    if (generated := report.report_generation) is not None:
        rates = ("confabulating_reports", "confabulations_per_report", "omitting_reports")
        summary["report_generation"] = {
            "n_reports": generated["n_reports"],
            "n_patients": generated["n_patients"],
            "reference": generated.get("reference"),
            **{name: generated["overall"][name] for name in rates},
        }
    return summary


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


# The sweeper re-sends an MLflow copy left pending or failed this long after it was last sent or
# tried: longer than the copy task's longest wait between two retries (600 s) plus its time limit
# (300 s), so that a copy whose task is still retrying is not sent a second time.
MLFLOW_RESEND_AFTER = timedelta(minutes=20)


@contextmanager
def sweep_lock(name: str, *, seconds: int, now: datetime | None = None) -> Iterator[bool]:
    """Hold the sweep ``name`` for at most ``seconds``: True for the one caller that got it, False
    while another holds it. A ``SweepLock`` row taken with one conditional UPDATE, like a run's
    lease: it works on SQLite and PostgreSQL alike, and a holder that dies lets it lapse."""
    now = now or timezone.now()
    until = now + timedelta(seconds=seconds)
    SweepLock.objects.get_or_create(name=name)
    held = bool(SweepLock.objects.filter(name=name).filter(Q(held_until__isnull=True) | Q(held_until__lt=now)).update(held_until=until))
    try:
        yield held
    finally:
        if held:
            SweepLock.objects.filter(name=name, held_until=until).update(held_until=None)


def run_sweep(*, now: datetime | None = None, unclaimed_after_seconds: int | None = None) -> dict[str, list[int]]:
    """Re-queue runs whose worker died, fail those out of attempts, and re-send what a lost message
    or a broker that was down left undone: queued runs nobody claimed, and the MLflow copies of
    succeeded runs. Each is re-sent once per period from its last send, not on every sweep, so a
    backlog behind a busy worker does not grow. A sharded run's shards are swept alike, each
    alone (``validation.sharding.shards_sweep``)."""
    now = now or timezone.now()
    unclaimed_after = timedelta(seconds=unclaimed_after_seconds if unclaimed_after_seconds is not None else settings.RADTRUST_RUN_UNCLAIMED_SECONDS)
    from validation.sharding import shards_sweep  # sharding builds on this module's claims and reporters

    requeued, failed = _lost_runs_requeue(now)
    return {
        "requeued": requeued,
        "failed": failed,
        "resent": _unclaimed_runs_resend(sent_before=now - unclaimed_after, now=now, requeued=requeued),
        "mlflow_resent": _mlflow_copies_resend(sent_before=now - MLFLOW_RESEND_AFTER, now=now),
        **shards_sweep(now=now, unclaimed_after=unclaimed_after),
    }


def _lost_runs_requeue(now: datetime) -> tuple[list[int], list[int]]:
    """Runs whose lease expired go back to the queue, or fail once out of attempts; the ids re-queued and failed."""
    requeued: list[int] = []
    failed: list[int] = []
    expired = list(ValidationRun.objects.filter(status=RunStatus.RUNNING, lease_until__lt=now).values_list("pk", flat=True))
    for run_id in expired:
        with transaction.atomic():
            run = ValidationRun.objects.select_for_update().get(pk=run_id)
            if run.status != RunStatus.RUNNING or run.lease_until is None or run.lease_until >= now:
                continue
            lost = f"The worker {run.worker or '?'} stopped sending heartbeats (attempt {run.attempt})."
            if run.cancel_requested:
                run_finish(
                    run, status=RunStatus.CANCELLED, action="cancel", error_reason=FailureReason.CANCELLED, error="Cancelled; its worker had stopped."
                )
                continue
            if run.attempt >= run.max_attempts:
                run_finish(
                    run,
                    status=RunStatus.FAILED,
                    action="fail",
                    error_reason=FailureReason.WORKER_LOST,
                    error=f"{lost} No attempts left ({run.max_attempts}).",
                )
                failed.append(run.pk)
                continue
            run.status, run.stage, run.lease_until, run.error = RunStatus.QUEUED, RunStage.QUEUED, None, lost
            with audit_action("requeue"):
                run.save(update_fields=["status", "stage", "lease_until", "error"])
            # robust: a send the broker refuses leaves the run queued, and the next sweep sends it.
            transaction.on_commit(lambda r=run: run_enqueue(run_id=r.pk, queue=r.queue, now=now), robust=True)
            requeued.append(run.pk)
    return requeued, failed


def _unclaimed_runs_resend(*, sent_before: datetime, now: datetime, requeued: list[int]) -> list[int]:
    """Send again the queued runs last sent (never sent: created) before ``sent_before``, but
    not those this sweep has just re-queued."""
    unclaimed = (
        ValidationRun.objects.filter(status=RunStatus.QUEUED)
        .exclude(pk__in=requeued)
        .annotate(last_sent=Coalesce("sent_at", "created_at"))
        .filter(last_sent__lt=sent_before)
        .order_by("pk")
    )
    return _send_each((run_id, partial(run_enqueue, run_id=run_id, queue=queue, now=now)) for run_id, queue in unclaimed.values_list("pk", "queue"))


def _mlflow_copies_resend(*, sent_before: datetime, now: datetime) -> list[int]:
    """Send again the MLflow copies of succeeded runs still pending or failed, held by no worker,
    last sent or tried (never sent: finished) before ``sent_before``."""
    awaiting = (
        ValidationRun.objects.filter(status=RunStatus.SUCCEEDED, mlflow_state__in=[MlflowState.PENDING, MlflowState.FAILED])
        .filter(Q(mlflow_lease_until__isnull=True) | Q(mlflow_lease_until__lt=now))
        .annotate(last_sent=Coalesce("mlflow_sent_at", "finished_at"))
        .filter(last_sent__lt=sent_before)
        .order_by("pk")
    )
    return _send_each((run_id, partial(run_mlflow_enqueue, run_id=run_id, now=now)) for run_id in awaiting.values_list("pk", flat=True))


def _send_each(sends: Iterable[tuple[int, Callable[[], None]]]) -> list[int]:
    """Make each send; the run ids sent. The first send the broker refuses ends the loop (it
    would refuse the rest too), and the next sweep tries again."""
    sent = []
    for run_id, send in sends:
        try:
            send()
        except Exception:  # kombu and each transport raise their own errors for a broker that is down
            log.exception("Sweep: could not send run %s; the next sweep tries again.", run_id)
            break
        sent.append(run_id)
    return sent


def run_mlflow_claim(*, run_id: int, lease_seconds: int) -> bool:
    """Take the MLflow copy of a succeeded run for ``lease_seconds``; False if it needs none or
    another worker holds it. One conditional UPDATE, as ``registry.services.version_mirror_claim``,
    so the task's retries and the sweeper's re-sends never copy a run twice at once. It notes the
    try (``mlflow_sent_at``), so the sweeper leaves alone a copy whose task is still retrying."""
    now = timezone.now()
    return bool(
        ValidationRun.objects.filter(pk=run_id, status=RunStatus.SUCCEEDED, mlflow_state__in=[MlflowState.PENDING, MlflowState.FAILED])
        .filter(Q(mlflow_lease_until__isnull=True) | Q(mlflow_lease_until__lt=now))
        .update(mlflow_lease_until=now + timedelta(seconds=lease_seconds), mlflow_sent_at=now)
    )


def run_mlflow_state_set(*, run_id: int, state: str, mlflow_run_id: str = "", error: str = "") -> None:
    """Record where the MLflow copy stands and release its lease; operational, so not audited."""
    fields = {"mlflow_state": state, "mlflow_error": error[:2000], "mlflow_lease_until": None}
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
