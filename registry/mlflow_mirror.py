"""Mirror registered versions into the MLflow model registry through the real client.

RadTrust stays the system of record: the mirror is a copy (name, version, tags with
the sha256 and RadTrust ids, the artifact files) so that ML tooling can find models.
It is idempotent: a redelivered task finds the MLflow version it already created
by its ``radtrust.version_id`` tag and only records it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from django.conf import settings

from radtrust_engine.artifacts import ArtifactError, artifact_dir, verify_stored
from registry.choices import MirrorState
from registry.models import ModelVersion
from registry.services import artifact_root, version_mirror_claim, version_mirror_state_set

TAG_VERSION_ID = "radtrust.version_id"
# MLflow's HTTP client retries a refused connection for about four minutes (7 retries,
# exponential backoff) and waits 120 s per request. The task already retries with its
# own backoff and records the failure on the row, so one attempt should fail fast.
# Defaults only: an operator's environment wins.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
# Characters MLflow refuses in a registered model name.
_NAME_REFUSED = str.maketrans({"/": "-", ":": "-"})


@dataclass(frozen=True)
class MirrorResult:
    model_name: str
    mlflow_version: str
    created: bool


def mlflow_client():
    """A client on the configured tracking and registry stores (imported late: mlflow is slow to import)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)  # MLflow reads these on every request
    from mlflow import MlflowClient  # import mlflow costs about 2.4 s; only the mirror needs it

    if settings.MLFLOW_TRACKING_URI.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(settings.MLFLOW_TRACKING_URI.removeprefix("sqlite:///")), exist_ok=True)
    return MlflowClient(tracking_uri=settings.MLFLOW_TRACKING_URI, registry_uri=settings.MLFLOW_REGISTRY_URI)


def mirror_experiment_id(client) -> str:
    experiment = client.get_experiment_by_name(settings.MLFLOW_EXPERIMENT_NAME)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(settings.MLFLOW_EXPERIMENT_NAME, artifact_location=artifact_location(settings.MLFLOW_ARTIFACT_ROOT))


def artifact_location(root: str) -> str | None:
    """Where a new experiment keeps its files: a local folder as a file URI, any URI as given, or the server's default."""
    if not root:
        return None
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", root) and not root.startswith("file:"):
        return root  # s3://, gs://, mlflow-artifacts:/ ... are the server's business
    return f"file://{os.path.abspath(root.removeprefix('file://'))}"


def mlflow_model_name(version: ModelVersion) -> str:
    """The registered model name in MLflow: the foundation model's name, less what MLflow refuses."""
    return version.foundation_model.name.translate(_NAME_REFUSED)


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
    from mlflow.exceptions import MlflowException  # import mlflow costs about 2.4 s; only the mirror needs it

    client = mlflow_client()
    name = mlflow_model_name(version)
    try:
        client.create_registered_model(name, description=version.foundation_model.intended_purpose[:5000])
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    # Found by its tag, not by name: MLflow's filter grammar cannot quote every name
    # (``name='O\'Brien'`` matches nothing), and a miss here would mean a duplicate.
    for existing in client.search_model_versions(f"tags.`{TAG_VERSION_ID}` = '{int(version.pk)}'"):
        if existing.name == name:
            return MirrorResult(name, str(existing.version), created=False)

    problems = verify_stored(artifact_root(), version.artifact_sha256, version.artifact_files)
    if problems:  # never publish an artifact that no longer matches its registered hash
        raise ArtifactError(f"The stored artifact fails verification: {'; '.join(problems)}.")
    tags = _tags(version)
    run = client.create_run(mirror_experiment_id(client), tags=tags, run_name=f"{name} {version.version}")
    folder = artifact_dir(artifact_root(), version.artifact_sha256)
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


def version_mirror(*, version_id: int, lease_seconds: int = 900) -> MirrorResult | None:
    """Mirror one version and record the outcome on its row; re-raises failures so the task retries.

    Returns ``None`` when there is nothing to do: the version is gone, refused, or another
    worker holds its lease. A stored artifact that fails verification is marked refused.
    """
    version = ModelVersion.objects.select_related("foundation_model", "parent").filter(pk=version_id).first()
    if version is None:
        return None
    if version.mirror_state == MirrorState.MIRRORED and version.mlflow_version:
        return MirrorResult(version.mlflow_model_name, version.mlflow_version, created=False)
    if not version_mirror_claim(version_id=version_id, lease_seconds=lease_seconds):
        return None
    try:
        result = version_mirror_to_mlflow(version)
    except Exception as exc:
        state = MirrorState.REFUSED if isinstance(exc, ArtifactError) else MirrorState.FAILED
        version_mirror_state_set(version_id=version_id, state=state, error=f"{exc.__class__.__name__}: {exc}")
        raise
    version_mirror_state_set(
        version_id=version_id,
        state=MirrorState.MIRRORED,
        mlflow_model_name=result.model_name,
        mlflow_version=result.mlflow_version,
    )
    return result
