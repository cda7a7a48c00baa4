"""Runs from generated reports: a report-generating model (a vision-language model RadTrust does
not run) is evaluated on a registered dataset from the reports it wrote elsewhere
(``radtrust_engine.report_runs``): per finding sensitivity, specificity and F1, and how often its
reports state findings that are not there (confabulation) or leave out those that are (omission),
with patient-level intervals and subgroups.

Tied like uploaded predictions (``validation.uploaded_outputs``): the stated artifact hash must be
the version's, the manifest the datasheet's; the manifest's label columns are the reference
findings. The evaluation is computed in the request, since the whole file must be read to refuse it
and reading findings from text takes no model: any problem (empty report text, a file that is not
UTF-8, a case twice or missing, a case not in the manifest) is a validation error naming the first
offending rows, and nothing is stored. The run is stored succeeded with ``outputs_source =
uploaded``, so its page and the trust score say that RadTrust did not run the model.
"""

from __future__ import annotations

import hashlib

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from radtrust_engine.report_evaluation import ReportInputError
from radtrust_engine.report_runs import evaluate_report_run
from registry.models import Dataset, ModelVersion
from validation.choices import MlflowState, OutputsSource, RunStage, RunStatus
from validation.models import ValidationRun
from validation.services import run_finish, run_mlflow_enqueue, run_summary
from validation.uploaded_outputs import manifest_load, upload_checks


def _headline(evaluation: dict) -> dict:
    """The report-level rates with their intervals, for the run's summary."""
    overall = evaluation["overall"]
    return {
        "n_reports": evaluation["n_reports"],
        "n_patients": evaluation["n_patients"],
        **{name: overall[name] for name in ("confabulating_reports", "confabulations_per_report", "omitting_reports")},
    }


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
) -> ValidationRun:
    """Evaluate ``version``'s generated reports on ``dataset`` and store the succeeded run; refused
    with nothing stored as ``run_from_predictions`` refuses, and for a reports file
    ``read_reports`` refuses or an output schema that names no finding the extractor reads."""
    suite, class_names = upload_checks(version=version, dataset=dataset, artifact_sha256=artifact_sha256, config=config, what="reports")
    table, manifest_sha = manifest_load(dataset=dataset, manifest=manifest, class_names=class_names)
    started = timezone.now()
    try:
        report = evaluate_report_run(reports, table, config=suite, uncertain_as_present=uncertain_as_present)
    except ReportInputError as exc:
        raise ValidationError({"reports": str(exc)}) from None
    summary = {**run_summary(report), "report_generation": _headline(report.report_generation)}
    run = ValidationRun(
        version=version,
        dataset=dataset,
        manifest=manifest,
        config=suite.to_dict(),
        requested_by=actor,
        outputs_source=OutputsSource.UPLOADED,
        predictions_sha256=hashlib.sha256(reports).hexdigest(),
        predictions_name=filename[:300],
        manifest_sha256=manifest_sha,
        status=RunStatus.RUNNING,
        stage=RunStage.METRICS,
        attempt=1,
        started_at=started,
    )
    with transaction.atomic():
        run.save()
        run_finish(
            run,
            status=RunStatus.SUCCEEDED,
            action="succeed",
            results=report.to_dict(),
            summary=summary,
            timings={"metrics": (timezone.now() - started).total_seconds()},
            progress=1.0,
            mlflow_state=MlflowState.PENDING,
        )
        # robust: with the broker down the run still stands; the sweeper sends its MLflow copy later.
        transaction.on_commit(lambda: run_mlflow_enqueue(run_id=run.pk), robust=True)
    return run
