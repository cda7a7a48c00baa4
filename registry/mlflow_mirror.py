"""Mirror registered versions into the MLflow model registry through the real client.

RadTrust stays the system of record: the mirror is a copy (name, version, tags with
the sha256 and RadTrust ids, the artifact files) so that ML tooling can find models.
It is idempotent: a redelivered task finds the MLflow version it already created
by its ``radtrust.version_id`` tag and only records it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from django.conf import settings

from registry.choices import MirrorState
from registry.models import ModelVersion
from registry.services import artifact_root, version_mirror_state_set

TAG_VERSION_ID = "radtrust.version_id"


@dataclass(frozen=True)
class MirrorResult:
    model_name: str
    mlflow_version: str
    created: bool


def mlflow_client():
    """A client on the configured tracking and registry stores (imported late: mlflow is slow to import)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow import MlflowClient

    if settings.MLFLOW_TRACKING_URI.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(settings.MLFLOW_TRACKING_URI.removeprefix("sqlite:///")), exist_ok=True)
    return MlflowClient(tracking_uri=settings.MLFLOW_TRACKING_URI, registry_uri=settings.MLFLOW_REGISTRY_URI)


def _experiment_id(client) -> str:
    experiment = client.get_experiment_by_name(settings.MLFLOW_EXPERIMENT_NAME)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if "://" not in settings.MLFLOW_ARTIFACT_ROOT or settings.MLFLOW_ARTIFACT_ROOT.startswith("file:"):
        location = f"file://{os.path.abspath(settings.MLFLOW_ARTIFACT_ROOT.removeprefix('file://'))}"
    elif settings.MLFLOW_ARTIFACT_ROOT:
        location = settings.MLFLOW_ARTIFACT_ROOT
    return client.create_experiment(settings.MLFLOW_EXPERIMENT_NAME, artifact_location=location)


def _tags(version: ModelVersion) -> dict[str, str]:
    return {
        TAG_VERSION_ID: str(version.pk),
        "radtrust.foundation_model_id": str(version.foundation_model_id),
        "radtrust.version": version.version,
        "radtrust.sha256": version.artifact_sha256,
        "radtrust.parent_version": version.parent.version if version.parent_id else "",
        "radtrust.opset": str(version.opset),
        "radtrust.parameter_count": str(version.parameter_count),
    }


def version_mirror_to_mlflow(version: ModelVersion) -> MirrorResult:
    """Create (or find) the MLflow model version for ``version``; raises if MLflow is unreachable."""
    from mlflow.exceptions import MlflowException

    client = mlflow_client()
    name = version.foundation_model.name
    try:
        client.create_registered_model(name, description=version.foundation_model.intended_purpose[:5000])
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    for existing in client.search_model_versions(f"name='{_quoted(name)}'"):
        if existing.tags.get(TAG_VERSION_ID) == str(version.pk):
            return MirrorResult(name, str(existing.version), created=False)

    tags = _tags(version)
    run = client.create_run(_experiment_id(client), tags=tags, run_name=f"{name} {version.version}")
    folder = artifact_root() / version.artifact_sha256[:2] / version.artifact_sha256
    client.log_artifacts(run.info.run_id, str(folder), artifact_path="model")
    client.log_param(run.info.run_id, "sha256", version.artifact_sha256)
    client.set_terminated(run.info.run_id)
    created = client.create_model_version(
        name=name,
        source=f"{run.info.artifact_uri}/model",
        run_id=run.info.run_id,
        tags=tags,
        description=version.release_notes[:5000],
    )
    return MirrorResult(name, str(created.version), created=True)


def _quoted(name: str) -> str:
    return name.replace("'", "\\'")


def version_mirror(*, version_id: int) -> MirrorResult | None:
    """Mirror one version and record the outcome on its row; re-raises failures so the task retries."""
    version = ModelVersion.objects.select_related("foundation_model", "parent").filter(pk=version_id).first()
    if version is None:
        return None
    if version.mirror_state == MirrorState.MIRRORED and version.mlflow_version:
        return MirrorResult(version.mlflow_model_name, version.mlflow_version, created=False)
    try:
        result = version_mirror_to_mlflow(version)
    except Exception as exc:
        version_mirror_state_set(version_id=version_id, state=MirrorState.FAILED, error=f"{exc.__class__.__name__}: {exc}")
        raise
    version_mirror_state_set(
        version_id=version_id,
        state=MirrorState.MIRRORED,
        mlflow_model_name=result.model_name,
        mlflow_version=result.mlflow_version,
    )
    return result
