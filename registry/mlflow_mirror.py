"""Mirror registered versions into the MLflow model registry through the real client.

RadTrust stays the system of record: the mirror is a copy so that ML tooling can find
and load models. Each version is a real MLflow model (the stored ONNX files byte for
byte, plus an ``MLmodel`` with the ONNX and pyfunc flavours, a signature read from the
graph and an input example), tagged with the sha256 and RadTrust ids. Lifecycle tags,
trust scores and the ``approved`` / ``deployed-<institution>`` aliases follow the
version through ``foundation_model_lifecycle_to_mlflow``. Everything is idempotent: a
redelivered task finds the MLflow version it already created by its
``radtrust.version_id`` tag, and the lifecycle sync sets what differs.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from radtrust_engine.artifacts import ArtifactError, artifact_dir, verify_stored
from registry.choices import DeploymentStatus, MirrorState, VersionStatus
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
# An alias is letters, digits, "_" and "-".
_ALIAS_REFUSED = re.compile(r"[^a-z0-9_-]+")
ALIAS_APPROVED = "approved"
ALIAS_DEPLOYED_PREFIX = "deployed-"
# The statuses in which a version may be used; a suspended or retired one holds no alias.
_RELEASED = {VersionStatus.APPROVED, VersionStatus.DEPLOYED}


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


def onnx_signature(model_file: Path):
    """The MLflow signature of an ONNX graph (its real inputs and outputs as tensors, a dynamic
    dimension as -1) and an input example of zeros (a dynamic dimension as 1)."""
    import numpy as np
    import onnx
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    graph = onnx.load(str(model_file), load_external_data=False).graph
    weights = {tensor.name for tensor in graph.initializer}  # old exporters list weights as inputs

    def spec(value) -> TensorSpec:
        tensor = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
        return TensorSpec(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type), shape, value.name)

    inputs = [spec(value) for value in graph.input if value.name not in weights]
    signature = ModelSignature(inputs=Schema(inputs), outputs=Schema([spec(value) for value in graph.output]))
    examples = {s.name: np.zeros([1 if d == -1 else d for d in s.shape], dtype=s.type) for s in inputs}
    return signature, next(iter(examples.values())) if len(examples) == 1 else examples


def mlflow_model_folder(version: ModelVersion, folder: Path) -> Path:
    """``folder`` made an MLflow model: the stored files unchanged, beside an ``MLmodel`` with the
    ONNX and pyfunc flavours, the signature and an input example.

    Written by hand rather than with ``mlflow.onnx.save_model``, which re-serialises the graph:
    the mirrored files must stay byte-identical to the ones whose sha256 was registered.
    """
    import onnx
    from mlflow import pyfunc
    from mlflow.models import Model
    from mlflow.models.utils import _save_example

    stored = artifact_dir(artifact_root(), version.artifact_sha256)
    folder.mkdir(parents=True)
    for entry in version.artifact_files:
        shutil.copyfile(stored / entry["name"], folder / entry["name"])
    graph_name = next(entry["name"] for entry in version.artifact_files if entry["role"] == "model")
    signature, example = onnx_signature(folder / graph_name)
    model = Model(signature=signature, metadata={"radtrust_version_id": version.pk, "sha256": version.artifact_sha256})
    _save_example(model, example, str(folder))
    pyfunc.add_to_model(model, loader_module="mlflow.onnx", data=graph_name)
    model.add_flavor("onnx", onnx_version=onnx.__version__, data=graph_name, providers=["CPUExecutionProvider"], code=None)
    model.save(str(folder / "MLmodel"))
    return folder


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
    with tempfile.TemporaryDirectory() as scratch:
        folder = mlflow_model_folder(version, Path(scratch) / "model")
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


def alias_deployed(institution_code: str) -> str:
    """The alias of the version deployed at an institution: ``deployed-<code>``, lower case."""
    return ALIAS_DEPLOYED_PREFIX + _ALIAS_REFUSED.sub("-", institution_code.lower()).strip("-")


def lifecycle_aliases(versions: list[ModelVersion]) -> dict[str, ModelVersion]:
    """Which version each lifecycle alias names: ``approved`` the newest approved or deployed
    version, ``deployed-<code>`` the newest such version with an active deployment there. A
    suspended, retired or unreleased version holds none, so its aliases move or disappear."""
    aliases: dict[str, ModelVersion] = {}
    for version in sorted(versions, key=lambda v: (v.created_at, v.pk)):
        if version.status not in _RELEASED:
            continue
        aliases[ALIAS_APPROVED] = version
        for deployment in version.deployments.all():
            if deployment.status == DeploymentStatus.ACTIVE:
                aliases[alias_deployed(deployment.institution.code)] = version
    return aliases


def lifecycle_tags(version: ModelVersion) -> dict[str, str]:
    """The version's status and its latest trust scores (0-100, or "not scored") as MLflow tags."""
    tags = {
        "radtrust.status": version.status,
        "radtrust.status_label": version.get_status_display(),
        "radtrust.suspended": str(version.status == VersionStatus.SUSPENDED).lower(),
    }
    # The reverse accessor of compliance's TrustAssessment: read by name, never imported (layers).
    assessment = version.trust_assessments.order_by("-computed_at", "-pk").first()
    if assessment is not None:
        tags["radtrust.trust.assessed_at"] = assessment.computed_at.isoformat(timespec="seconds")
        for principle, result in sorted(assessment.principles.items()):
            score = result.get("score") if isinstance(result, dict) else None
            tags[f"radtrust.trust.{principle}"] = "not scored" if score is None else f"{float(score):.0f}"
    return tags


def _is_lifecycle_alias(alias: str) -> bool:
    return alias == ALIAS_APPROVED or alias.startswith(ALIAS_DEPLOYED_PREFIX)


def foundation_model_lifecycle_to_mlflow(foundation_model_id: int) -> int:
    """Make the MLflow tags and lifecycle aliases of a foundation model's mirrored versions match
    RadTrust; returns how many tags and aliases changed. Safe to repeat: only differences are sent,
    and aliases MLflow users set themselves (anything but ``approved`` / ``deployed-*``) are kept."""
    versions = list(
        ModelVersion.objects.filter(foundation_model_id=foundation_model_id, mirror_state=MirrorState.MIRRORED)
        .exclude(mlflow_version="")
        .prefetch_related("deployments__institution")
    )
    if not versions:
        return 0
    client = mlflow_client()
    changed = 0
    by_name: dict[str, list[ModelVersion]] = defaultdict(list)
    for version in versions:
        by_name[version.mlflow_model_name].append(version)
        held = client.get_model_version(version.mlflow_model_name, version.mlflow_version).tags
        for key, value in lifecycle_tags(version).items():
            if held.get(key) != value:
                client.set_model_version_tag(version.mlflow_model_name, version.mlflow_version, key, value)
                changed += 1
    for name, group in by_name.items():
        wanted = {alias: str(version.mlflow_version) for alias, version in lifecycle_aliases(group).items()}
        held = {alias: str(number) for alias, number in client.get_registered_model(name).aliases.items()}
        for alias, number in held.items():
            if _is_lifecycle_alias(alias) and wanted.get(alias) != number:
                client.delete_registered_model_alias(name, alias)
                changed += 1
        for alias, number in wanted.items():
            if held.get(alias) != number:
                client.set_registered_model_alias(name, alias, number)
                changed += 1
    return changed
