"""Runs from uploaded outputs: a model RadTrust cannot run (a vision-language model, a model behind
its provider's own service) is still evaluated on a registered dataset, from a predictions file
produced elsewhere (``radtrust_engine.external_outputs``).

The file is tied to a registered version by the artifact hash its uploader states (it must match
the version's) and to the dataset by the manifest's hash (it must match the datasheet's). Nothing
needs a worker: the analyses are computed in the request and the run is stored succeeded, with
``outputs_source = uploaded`` so that its report, its pages and the trust score say that RadTrust
did not run the model. Any problem raises a validation error and stores nothing.
"""

from __future__ import annotations

import hashlib

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from core.errors import Conflict
from radtrust_engine.external_outputs import PredictionsError, evaluate_predictions, read_predictions
from radtrust_engine.loading import Manifest, ManifestError, read_manifest
from radtrust_engine.pipeline import SuiteConfig
from registry.choices import CLASSIFICATION_TASKS, VersionStatus
from registry.models import Dataset, ModelVersion
from registry.services import data_use_check
from validation.baselines import baseline_check, baseline_load, version_baseline
from validation.choices import MlflowState, OutputsSource, RunStage, RunStatus
from validation.models import ValidationRun
from validation.run_outputs import run_outputs_save, run_outputs_write
from validation.services import documented_manifest, manifest_name_check, run_finish, run_mlflow_enqueue, run_summary


def run_from_predictions(
    *,
    actor,
    version: ModelVersion,
    dataset: Dataset,
    predictions: bytes,
    filename: str,
    artifact_sha256: str,
    manifest: str = "manifest.csv",
    config: dict | None = None,
    baseline: ValidationRun | None = None,
) -> ValidationRun:
    """Evaluate uploaded outputs of ``version`` on ``dataset`` and store the succeeded run.

    Refuses (nothing stored) a retired version, data without a grant, a version without an output
    schema, a stated ``artifact_sha256`` other than the version's, a manifest changed since its
    datasheet, and a predictions file that ``read_predictions`` refuses."""
    suite, class_names = upload_checks(version=version, dataset=dataset, artifact_sha256=artifact_sha256, config=config, what="predictions")
    if version.foundation_model.task not in CLASSIFICATION_TASKS:
        task = version.foundation_model.get_task_display().lower()
        raise ValidationError({"version": f"Uploaded outputs are evaluated for classifiers only; this is a {task} model: run its ONNX file instead."})
    if baseline is not None and (problem := baseline_check(run_version=version, baseline=baseline)):
        raise ValidationError({"baseline": f"Run {baseline.pk} cannot be this run's baseline: {problem}."})
    table, manifest_sha = manifest_load(dataset=dataset, manifest=manifest, class_names=class_names)
    try:
        outputs = read_predictions(
            predictions,
            filename,
            sha256=hashlib.sha256(predictions).hexdigest(),
            class_names=class_names,
            case_ids=table.image_paths,
        )
    except PredictionsError as exc:
        raise ValidationError({"predictions": str(exc)}) from None

    run = ValidationRun(
        version=version,
        dataset=dataset,
        manifest=manifest,
        config=suite.to_dict(),
        requested_by=actor,
        baseline=baseline or version_baseline(version),
        outputs_source=OutputsSource.UPLOADED,
        predictions_sha256=outputs.sha256,
        predictions_name=filename[:300],
        manifest_sha256=manifest_sha,
        status=RunStatus.RUNNING,
        stage=RunStage.METRICS,
        attempt=1,
        started_at=timezone.now(),
    )
    evaluation = evaluate_predictions(
        outputs,
        table,
        task=version.foundation_model.task,
        thresholds=version.output_schema.get("thresholds", {}),
        config=suite,
        baseline=baseline_load(run) if "drift" in suite.analyses else None,
    )
    with transaction.atomic():
        run.save()
        files = run_outputs_write(run_id=run.pk, attempt=run.attempt, evaluation=evaluation)
        run_finish(
            run,
            status=RunStatus.SUCCEEDED,
            action="succeed",
            results=evaluation.report,
            summary=run_summary(evaluation.run_report),
            timings=evaluation.timings,
            progress=1.0,
            mlflow_state=MlflowState.PENDING,
        )
        run_outputs_save(run, files)
        # robust: with the broker down the run still stands; the sweeper sends its MLflow copy later.
        transaction.on_commit(lambda: run_mlflow_enqueue(run_id=run.pk), robust=True)
    return run


def upload_checks(*, version: ModelVersion, dataset: Dataset, artifact_sha256: str, config: dict | None, what: str) -> tuple[SuiteConfig, list[str]]:
    """The checks every run from an upload passes before its file is read: the version is not
    retired and has an output schema, the data is granted to its provider, the stated artifact
    hash is the version's, the suite config is valid. Returns the suite and the class names."""
    if version.status == VersionStatus.RETIRED:
        raise Conflict("A retired version is not validated any more.", code="version_retired")
    data_use_check(dataset=dataset, grantee_id=version.foundation_model.provider_id)
    class_names = list(version.output_schema.get("class_names", []))
    if not class_names:
        raise ValidationError({"version": "The version has no output schema (class names and thresholds); set it before validating."})
    if artifact_sha256.strip().lower() != version.artifact_sha256:
        raise ValidationError(
            {
                "artifact_sha256": f"The {what} name artifact {artifact_sha256[:12]}..., but version {version.version} is "
                f"{version.artifact_sha256[:12]}...: upload outputs of the registered artifact, or register the model that made them."
            }
        )
    try:
        return SuiteConfig.from_dict(config), class_names
    except ValueError as exc:
        raise ValidationError({"config": str(exc)}) from None


def manifest_load(*, dataset: Dataset, manifest: str, class_names: list[str]) -> tuple[Manifest, str]:
    """The dataset's manifest read and checked, with its sha256 (``manifest_read``); a problem is a
    validation error under ``manifest``."""
    try:
        return manifest_read(dataset=dataset, manifest=manifest, class_names=class_names)
    except ManifestError as exc:
        raise ValidationError({"manifest": str(exc)}) from None


def manifest_read(
    *, dataset: Dataset, manifest: str, class_names: list[str], labelled: bool = True, accepted_sha256: str = ""
) -> tuple[Manifest, str]:
    """The dataset's manifest read and checked, with its sha256; ``ManifestError`` when it changed since
    the datasheet, or since ``accepted_sha256`` (a worker reading what its request accepted: the
    changed file is then not read). The version's classes are its label columns unless not
    ``labelled`` (generated reports against reference reports), when the manifest needs none."""
    root, path, manifest_sha = documented_manifest(dataset, manifest_name_check(manifest))
    if accepted_sha256 and accepted_sha256 != manifest_sha:
        raise ManifestError(
            f"manifest {manifest!r} has sha256 {manifest_sha[:12]}..., but the run was accepted against "
            f"{accepted_sha256[:12]}...: the data changed since they were uploaded"
        )
    label_columns = class_names if labelled else []
    return read_manifest(path, root, label_columns=label_columns, class_names=class_names, labels_needed=labelled), manifest_sha
