"""Runs from generated reports: a report-generating model (a vision-language model RadTrust does
not run) is evaluated on a registered dataset from the reports it wrote elsewhere
(``radtrust_engine.report_runs``): per finding sensitivity, specificity and F1, and how often its
reports state findings that are not there (confabulation) or leave out those that are (omission),
with patient-level intervals and subgroups. The reference is the manifest's label columns, or
reference reports uploaded beside the generated ones and read by the same extractor; the manifest
then needs no label column (a hospital's list of reported studies has none), only its case ids,
patient ids and subgroup attributes.

Two halves, as for every run:

1. The request (``run_from_reports``) checks all that needs no computing: the stated artifact
   hash is the version's, the manifest the datasheet's, and both files are read whole
   (``report_run_inputs``). Any problem (empty report text, a file that is not UTF-8, a case twice
   or missing, a case not in the manifest) is a validation error naming the first offending rows,
   and nothing is stored. Then the files are stored, content-addressed and before the run row (a
   transaction that fails leaves at most an unreferenced copy, never a run without its file), and
   the run is created queued, with its ``ReportRunUpload``, and sent once committed.
2. A worker claims it like any run (``services.run_execute``: lease, heartbeats, one closing
   transaction) and evaluates it here (``report_run_evaluate``), reading the stored files only
   after checking them against their hashes, and the manifest against the one the request read.

The run has ``outputs_source = uploaded``, so its page and the trust score say that RadTrust did
not run the model.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from radtrust_engine.loading import Manifest, ManifestError
from radtrust_engine.pipeline import Evaluation, SuiteConfig
from radtrust_engine.report_evaluation import ReportInputError
from radtrust_engine.report_runs import evaluate_report_run, finding_columns, report_run_inputs
from registry.models import Dataset, ModelVersion
from validation.choices import FailureReason, OutputsSource, ReportReference, RunStage
from validation.models import ReportRunUpload, ValidationRun
from validation.services import RunReporter, run_enqueue
from validation.uploaded_outputs import manifest_read, upload_checks

# Reading findings from text needs no accelerator: the workers of the default queue take these runs.
REPORTS_QUEUE = "default"
# Why a label column is needed, told to whoever uploads reports with a manifest that lacks one.
LABELS_HINT = (
    ". Without reference reports the reference findings are the manifest's label columns, one per class of the "
    "version's output schema; to compare with radiologists' reports instead, upload them as reference_reports "
    "(the manifest then needs only case ids, patient ids and attributes)."
)


class UploadChanged(Exception):
    """A stored upload of the run is missing or no longer matches its recorded hash."""

    reason = FailureReason.UPLOAD_CHANGED


class SchemaChanged(Exception):
    """The version's output schema no longer names reference findings the accepted manifest holds."""

    reason = FailureReason.SCHEMA_CHANGED


def run_from_reports(
    *,
    actor,
    version: ModelVersion,
    dataset: Dataset,
    reports: bytes,
    filename: str,
    artifact_sha256: str,
    manifest: str = "manifest.csv",
    config: dict | None = None,
    uncertain_as_present: bool = False,
    reference_reports: bytes | None = None,
    reference_filename: str = "",
) -> ValidationRun:
    """Queue the evaluation of ``version``'s generated reports on ``dataset``, against the manifest's
    reference findings or ``reference_reports``. Refused with nothing stored as
    ``run_from_predictions`` refuses, and for a file ``read_reports`` refuses (under the field of
    that file) or, with reference labels, an output schema naming no finding the extractor reads.
    Reference reports carry the findings, so the manifest is then read without label columns; with
    reference labels, a problem with one of them says that reference reports need none."""
    suite, class_names = upload_checks(version=version, dataset=dataset, artifact_sha256=artifact_sha256, config=config, what="reports")
    labelled = reference_reports is None
    try:
        table, manifest_sha = manifest_read(dataset=dataset, manifest=manifest, class_names=class_names, labelled=labelled)
    except ManifestError as exc:
        hint = LABELS_HINT if labelled and exc.column in class_names else ""
        raise ValidationError({"manifest": f"{exc}{hint}"}) from None
    try:
        report_run_inputs(reports, table, reference_reports=reference_reports, uncertain_as_present=uncertain_as_present)
    except ReportInputError as exc:
        raise ValidationError({exc.field: str(exc)}) from None
    upload = ReportRunUpload(reports_storage_name=_store(reports), uncertain_as_present=uncertain_as_present)
    if reference_reports is not None:
        upload.reference = ReportReference.REPORTS
        upload.reference_storage_name = _store(reference_reports)
        upload.reference_sha256 = hashlib.sha256(reference_reports).hexdigest()
        upload.reference_name = reference_filename[:300]
    run = ValidationRun(
        version=version,
        dataset=dataset,
        manifest=manifest,
        config=suite.to_dict(),
        queue=REPORTS_QUEUE,
        requested_by=actor,
        max_attempts=settings.RADTRUST_RUN_MAX_ATTEMPTS,
        outputs_source=OutputsSource.UPLOADED,
        predictions_sha256=hashlib.sha256(reports).hexdigest(),
        predictions_name=filename[:300],
        manifest_sha256=manifest_sha,
    )
    with transaction.atomic():
        run.save()
        upload.run = run
        upload.save()
        # robust: a broker that is down must not fail the request; the sweeper sends the run later.
        transaction.on_commit(lambda: run_enqueue(run_id=run.pk, queue=run.queue), robust=True)
    return run


def _store(data: bytes) -> str:
    """Keep an upload under its sha256 (the same bytes uploaded twice are kept once); the storage name."""
    sha256 = hashlib.sha256(data).hexdigest()
    name = f"uploads/reports/{sha256}.jsonl"
    if default_storage.exists(name) and _read_checked(name, sha256) is not None:
        return name
    return default_storage.save(name, ContentFile(data))


def _read_checked(name: str, sha256: str) -> bytes | None:
    """The stored file's bytes if they still have ``sha256``; None if missing or changed."""
    try:
        with default_storage.open(name, "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == sha256 else None


def report_run_evaluate(run: ValidationRun, reporter: RunReporter) -> Evaluation:
    """The worker's half: the stored files (checked against their hashes, ``UploadChanged``
    otherwise) evaluated against the manifest the request accepted (``ManifestError`` if it
    changed since, ``SchemaChanged`` if the version's schema no longer fits it). No image is read and no model run, so the evaluation has no scores."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    reporter.write(stage=RunStage.MANIFEST, progress=0.0)
    upload = run.report_upload
    reports = _upload(upload.reports_storage_name, run.predictions_sha256, "generated reports")
    reference = None
    if upload.reference == ReportReference.REPORTS:
        reference = _upload(upload.reference_storage_name, upload.reference_sha256, "reference reports")
    table = _accepted_manifest(run, labelled=reference is None)
    timings["manifest"] = time.perf_counter() - started

    started = time.perf_counter()
    reporter.write(stage=RunStage.METRICS, progress=0.0)
    report = evaluate_report_run(
        reports,
        table,
        config=SuiteConfig.from_dict(run.config),
        uncertain_as_present=upload.uncertain_as_present,
        reference_reports=reference,
    )
    timings["metrics"] = time.perf_counter() - started
    return Evaluation(run_report=report, timings=timings, scores=np.empty((0, 0)), case_index=np.empty(0, dtype=np.int64))


def _upload(name: str, sha256: str, what: str) -> bytes:
    data = _read_checked(name, sha256)
    if data is None:
        raise UploadChanged(
            f"The {what} file accepted with this run (sha256 {sha256[:12]}...) is missing from storage or has changed since; "
            "upload the reports again as a new run."
        )
    return data


def _accepted_manifest(run: ValidationRun, labelled: bool) -> Manifest:
    """The run's manifest, read as the request read it: ``ManifestError`` if the file changed since,
    ``SchemaChanged`` if, with reference labels, the version's output schema no longer names a
    finding or names a label column the (unchanged) manifest cannot give, where the request read it
    with the schema of its time. A schema changed to other findings the manifest holds is used as it is now."""
    class_names = list(run.version.output_schema.get("class_names", []))
    if labelled:
        try:
            finding_columns(class_names)
        except ReportInputError as exc:
            raise SchemaChanged(_schema_changed(str(exc))) from None
    try:
        table, _ = manifest_read(
            dataset=run.dataset, manifest=run.manifest, class_names=class_names, labelled=labelled, accepted_sha256=run.manifest_sha256
        )
    except ManifestError as exc:
        if labelled and exc.column in class_names:
            raise SchemaChanged(_schema_changed(str(exc))) from None
        raise
    return table


def _schema_changed(problem: str) -> str:
    return (
        f"The version's output schema changed since the reports were accepted: {problem.rstrip('.')}. "
        "Restore the schema, or upload the reports again as a new run."
    )
