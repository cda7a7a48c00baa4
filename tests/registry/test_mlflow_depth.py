"""The MLflow mirror read back with the real MLflow client: loadable models, lifecycle tags and
aliases, trust scores, and validation runs with their subgroup metrics, dataset and charts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from registry.choices import DeploymentStatus, VersionStatus
from registry.mlflow_mirror import (
    ALIAS_APPROVED,
    foundation_model_lifecycle_to_mlflow,
    mlflow_client,
    version_mirror,
)
from registry.models import ModelVersion
from tests.factories import FoundationModelFactory

pytestmark = [pytest.mark.django_db, pytest.mark.slow]  # real MLflow store round trips


@pytest.fixture
def chest_fm(institutions):
    return FoundationModelFactory(provider=institutions["vendor"], name="ChestFM")


def _set_status(version: ModelVersion, status: str) -> None:
    ModelVersion.objects.filter(pk=version.pk).update(status=status)


@pytest.mark.parametrize("kind", ["inline", "external"])
def test_a_mirrored_version_loads_with_the_onnx_and_pyfunc_flavours(register_version, chest_fm, kind, settings, monkeypatch):
    import mlflow
    import mlflow.onnx
    import mlflow.pyfunc
    import onnxruntime

    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.MLFLOW_TRACKING_URI)  # what an engineer's shell sets
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", settings.MLFLOW_REGISTRY_URI)
    version = register_version(chest_fm, "1.0.0", kind=kind)
    result = version_mirror(version_id=version.pk)
    uri = f"models:/ChestFM/{result.mlflow_version}"

    onnx_model = mlflow.onnx.load_model(uri)
    pyfunc_model = mlflow.pyfunc.load_model(uri)

    [graph_input] = [i for i in onnx_model.graph.input if i.name not in {t.name for t in onnx_model.graph.initializer}]
    signature = pyfunc_model.metadata.get_input_schema()
    assert signature.input_names() == [graph_input.name]
    example = pyfunc_model.input_example[graph_input.name]  # a named tensor input reads back by its name
    assert example.shape[0] == 1 and example.dtype == np.float32
    predicted = pyfunc_model.predict(example)
    # The same graph run directly by ONNX Runtime gives the same scores: the mirror is the model.
    session = onnxruntime.InferenceSession(onnx_model.SerializeToString())
    expected = session.run(None, {graph_input.name: example.astype(np.float32)})[0]
    np.testing.assert_allclose(next(iter(predicted.values())), expected, rtol=1e-6)
    assert pyfunc_model.metadata.metadata["sha256"] == version.artifact_sha256


def test_lifecycle_aliases_and_tags_follow_approval_deployment_and_suspension(register_version, chest_fm, institutions):
    from tests.factories import DeploymentFactory

    base = register_version(chest_fm, "1.0.0")
    tuned = register_version(chest_fm, "1.1.0", parent=base)
    for v in (base, tuned):
        version_mirror(version_id=v.pk)
    client = mlflow_client()
    foundation_model_lifecycle_to_mlflow(chest_fm.pk)
    assert client.get_registered_model("ChestFM").aliases == {}  # drafts hold no alias

    _set_status(base, VersionStatus.APPROVED)
    _set_status(tuned, VersionStatus.DEPLOYED)
    DeploymentFactory(version=tuned, institution=institutions["north"], status=DeploymentStatus.ACTIVE)
    foundation_model_lifecycle_to_mlflow(chest_fm.pk)
    base.refresh_from_db(), tuned.refresh_from_db()
    north = f"deployed-{institutions['north'].code.lower()}"
    assert client.get_registered_model("ChestFM").aliases == {ALIAS_APPROVED: int(tuned.mlflow_version), north: int(tuned.mlflow_version)}
    assert client.get_model_version_by_alias("ChestFM", north).tags["radtrust.version"] == "1.1.0"
    assert client.get_model_version("ChestFM", tuned.mlflow_version).tags["radtrust.status"] == "deployed"

    from compliance.trust.services import trust_assess

    assessment = trust_assess(version=tuned, trigger="manual")
    foundation_model_lifecycle_to_mlflow(chest_fm.pk)
    tags = client.get_model_version("ChestFM", tuned.mlflow_version).tags
    for principle, result in assessment.principles.items():
        expected = "not scored" if result["score"] is None else f"{result['score']:.0f}"
        assert tags[f"radtrust.trust.{principle}"] == expected
    assert len(assessment.principles) == 6

    client.set_registered_model_alias("ChestFM", "champion", tuned.mlflow_version)  # an engineer's own alias
    _set_status(tuned, VersionStatus.SUSPENDED)
    foundation_model_lifecycle_to_mlflow(chest_fm.pk)
    aliases = client.get_registered_model("ChestFM").aliases
    # The suspended version loses its lifecycle aliases; "approved" falls back to the approved base.
    assert aliases == {ALIAS_APPROVED: int(base.mlflow_version), "champion": int(tuned.mlflow_version)}
    tags = client.get_model_version("ChestFM", tuned.mlflow_version).tags
    assert (tags["radtrust.suspended"], tags["radtrust.status_label"]) == ("true", "Suspended")
    assert foundation_model_lifecycle_to_mlflow(chest_fm.pk) == 0  # a redelivery changes nothing


def test_a_validation_run_is_logged_with_subgroups_dataset_charts_and_real_times(run_setup, tmp_path):
    from validation import services
    from validation.mlflow_log import run_log

    # The last three patients recorded as sex "O": a subgroup below the minimum, suppressed in the report.
    manifest = run_setup["root"] / "manifest.csv"
    lines = manifest.read_text().splitlines()
    lines[-6:] = [line.replace(",F,", ",O,").replace(",M,", ",O,") for line in lines[-6:]]
    manifest.write_text("\n".join(lines) + "\n")
    version = run_setup["version"]
    version_mirror(version_id=version.pk)
    run = services.run_create(actor=run_setup["engineer"], version=version, dataset=run_setup["dataset"], config={"n_resamples": 20})
    services.run_execute(run_id=run.pk, worker="w")
    run.refresh_from_db()
    assert run.status == "succeeded", run.error

    logged = mlflow_client().get_run(run_log(run_id=run.pk))

    assert logged.info.start_time == int(run.started_at.timestamp() * 1000)
    assert logged.info.end_time == int(run.finished_at.timestamp() * 1000)
    assert logged.info.end_time - logged.info.start_time > 0
    subgroups = run.results["results"]["pneumothorax"]["subgroups"]
    suppressed = [g["name"] for g in subgroups if g["suppressed"]]
    shown = [g for g in subgroups if not g["suppressed"] and g["metrics"].get("auroc", {}).get("value") is not None]
    assert "sex=O" in suppressed and shown
    assert not [k for k in logged.data.metrics if any(f"/{name.replace('=', '_')}/" in k for name in suppressed)]
    for group in shown:
        prefix = f"pneumothorax/{group['name'].replace('=', '_')}/auroc"
        auroc = group["metrics"]["auroc"]
        assert logged.data.metrics[prefix] == pytest.approx(auroc["value"])
        assert logged.data.metrics[prefix + "_ci_low"] == pytest.approx(auroc["ci_low"])
        assert logged.data.metrics[prefix + "_ci_high"] == pytest.approx(auroc["ci_high"])
    [dataset] = logged.inputs.dataset_inputs
    assert dataset.dataset.name == "North test set"
    assert dataset.dataset.digest == run.manifest_sha256[:36]
    assert run.manifest_sha256 in dataset.dataset.source
    files = {f.path for folder in ("charts", "tables") for f in mlflow_client().list_artifacts(logged.info.run_id, folder)}
    assert "charts/roc-pneumothorax.svg" in files and "tables/pneumothorax-subgroups.csv" in files
    table = Path(mlflow_client().download_artifacts(logged.info.run_id, "tables/pneumothorax-subgroups.csv", str(tmp_path))).read_text()
    assert "sex" in table.lower()
    version.refresh_from_db()
    assert logged.data.tags["radtrust.mlflow_model_version"] == version.mlflow_version
    assert (
        mlflow_client().get_model_version(version.mlflow_model_name, version.mlflow_version).tags[f"radtrust.validation_run.{run.pk}"]
        == logged.info.run_id
    )


def test_mirroring_a_status_change_or_a_deployment_queues_the_lifecycle_sync(
    register_version, chest_fm, institutions, monkeypatch, django_capture_on_commit_callbacks
):
    from registry import tasks
    from tests.factories import DeploymentFactory

    queued: list[int] = []
    monkeypatch.setattr(tasks.lifecycle_mirror, "delay", queued.append)
    version = register_version(chest_fm, "1.0.0")
    with django_capture_on_commit_callbacks(execute=True):
        version.status = VersionStatus.APPROVED
        version.save(update_fields=["status"])
    assert queued == []  # not in MLflow yet: nothing to tag

    with django_capture_on_commit_callbacks(execute=True):
        version_mirror(version_id=version.pk)
    assert queued == [chest_fm.pk]  # mirrored: its tags and aliases follow at once
    version.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        DeploymentFactory(version=version, institution=institutions["north"], status=DeploymentStatus.ACTIVE)
        ModelVersion.objects.get(pk=version.pk).save(update_fields=["status"])
    assert queued == [chest_fm.pk] * 3
