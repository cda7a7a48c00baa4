"""The MLflow mirror, in process, against a real MLflow sqlite store in the test's folder."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from radtrust_engine.artifacts import artifact_dir
from registry.choices import MirrorState
from registry.mlflow_mirror import HTTP_DEFAULTS, TAG_VERSION_ID, mlflow_client, version_mirror, version_mirror_to_mlflow
from registry.models import ModelVersion
from registry.services import artifact_root
from tests.factories import FoundationModelFactory

pytestmark = [pytest.mark.django_db, pytest.mark.slow]  # real MLflow store round trips

# Nothing listens on the discard port: connections are refused at once.
UNREACHABLE = "http://127.0.0.1:9"


@pytest.fixture
def chest_fm(institutions):
    return FoundationModelFactory(provider=institutions["vendor"], name="ChestFM")


def _mlflow_versions(client, name: str) -> list:
    return list(client.search_model_versions(f"name='{name}'"))


def _reload(version: ModelVersion) -> ModelVersion:
    return ModelVersion.objects.get(pk=version.pk)


def test_mirror_creates_registered_model_and_tagged_version(register_version, chest_fm):
    version = register_version(chest_fm, "1.0.0", kind="external")

    result = version_mirror(version_id=version.pk)

    client = mlflow_client()
    assert client.get_registered_model("ChestFM").description == chest_fm.intended_purpose
    [mirrored] = _mlflow_versions(client, "ChestFM")
    assert result.created and result.model_name == "ChestFM" and result.mlflow_version == str(mirrored.version)
    assert mirrored.tags[TAG_VERSION_ID] == str(version.pk)
    assert mirrored.tags["radtrust.sha256"] == version.artifact_sha256
    assert mirrored.tags["radtrust.version"] == "1.0.0"
    assert mirrored.tags["radtrust.parent_version"] == ""
    row = _reload(version)
    assert row.mirror_state == MirrorState.MIRRORED
    assert (row.mlflow_model_name, row.mlflow_version) == ("ChestFM", str(mirrored.version))
    assert row.mirrored_at is not None and row.mirror_error == ""


def test_mirrored_artifacts_are_byte_identical_to_the_stored_files(register_version, chest_fm, tmp_path):
    version = register_version(chest_fm, "1.0.0", kind="external")
    version_mirror(version_id=version.pk)

    client = mlflow_client()
    [mirrored] = _mlflow_versions(client, "ChestFM")
    run = client.get_run(mirrored.run_id)
    assert mirrored.source == f"{run.info.artifact_uri}/model"
    downloaded = Path(client.download_artifacts(mirrored.run_id, "model", str(tmp_path / "download")))
    stored = artifact_dir(artifact_root(), version.artifact_sha256)
    names = sorted(f["name"] for f in version.artifact_files)
    assert names == ["model.onnx", "model.onnx.data"]  # the external data travels too
    # Beside the stored files, only what makes the folder an MLflow model.
    assert sorted(p.name for p in downloaded.iterdir()) == sorted([*names, "MLmodel", "input_example.json", "serving_input_example.json"])
    for entry in version.artifact_files:
        data = (downloaded / entry["name"]).read_bytes()
        assert data == (stored / entry["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert run.data.params["sha256"] == version.artifact_sha256


def test_mirroring_twice_creates_no_second_mlflow_version(register_version, chest_fm, settings):
    version = register_version(chest_fm, "1.0.0")
    first = version_mirror(version_id=version.pk)

    again = version_mirror(version_id=version.pk)
    # A redelivered task whose row was never updated (the worker died after MLflow
    # answered) must find the MLflow version by its tag, not create another.
    redelivered = version_mirror_to_mlflow(_reload(version))

    client = mlflow_client()
    assert [str(v.version) for v in _mlflow_versions(client, "ChestFM")] == [first.mlflow_version]
    assert again.mlflow_version == redelivered.mlflow_version == first.mlflow_version
    assert not again.created and not redelivered.created
    experiment = client.get_experiment_by_name(settings.MLFLOW_EXPERIMENT_NAME)
    assert len(client.search_runs([experiment.experiment_id])) == 1


def test_redelivery_finds_the_version_whatever_the_model_name(register_version, institutions):
    """MLflow's filter grammar cannot quote an apostrophe; the lookup must not depend on it."""
    fm = FoundationModelFactory(provider=institutions["vendor"], name="St. Mary's ChestFM")
    version = register_version(fm, "1.0.0")
    first = version_mirror_to_mlflow(version)

    again = version_mirror_to_mlflow(_reload(version))

    assert (again.created, again.mlflow_version) == (False, first.mlflow_version)
    assert [str(v.version) for v in mlflow_client().get_registered_model(fm.name).latest_versions] == [first.mlflow_version]
    assert len(mlflow_client().search_model_versions(f"tags.`{TAG_VERSION_ID}` = '{version.pk}'")) == 1


def test_model_name_with_characters_mlflow_refuses_is_mirrored(register_version, institutions):
    fm = FoundationModelFactory(provider=institutions["vendor"], name="CXR/PTX: triage")
    version = register_version(fm, "1.0.0")

    result = version_mirror(version_id=version.pk)

    assert result.model_name == "CXR-PTX- triage"
    [mirrored] = _mlflow_versions(mlflow_client(), "CXR-PTX- triage")
    assert mirrored.tags[TAG_VERSION_ID] == str(version.pk)
    assert _reload(version).mlflow_model_name == "CXR-PTX- triage"


def test_base_and_fine_tuned_versions_both_appear_with_their_lineage(register_version, chest_fm):
    base = register_version(chest_fm, "1.0.0", kind="external")
    tuned = register_version(chest_fm, "1.1.0", kind="inline", parent=base)

    version_mirror(version_id=base.pk)
    version_mirror(version_id=tuned.pk)

    mirrored = {v.tags["radtrust.version"]: v for v in _mlflow_versions(mlflow_client(), "ChestFM")}
    assert sorted(mirrored) == ["1.0.0", "1.1.0"]
    assert mirrored["1.0.0"].tags["radtrust.parent_version"] == ""
    assert mirrored["1.1.0"].tags["radtrust.parent_version"] == "1.0.0"
    assert mirrored["1.1.0"].tags[TAG_VERSION_ID] == str(tuned.pk)
    assert mirrored["1.1.0"].tags["radtrust.sha256"] == tuned.artifact_sha256 != base.artifact_sha256
    assert {_reload(base).mlflow_version, _reload(tuned).mlflow_version} == {"1", "2"}


def test_unreachable_mlflow_marks_the_row_failed_and_a_retry_mirrors_it(register_version, chest_fm, settings, monkeypatch):
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    version = register_version(chest_fm, "1.0.0")
    reachable = settings.MLFLOW_TRACKING_URI
    settings.MLFLOW_TRACKING_URI = settings.MLFLOW_REGISTRY_URI = UNREACHABLE

    started = time.monotonic()
    with pytest.raises(MlflowException, match="127.0.0.1"):
        version_mirror(version_id=version.pk)
    assert time.monotonic() - started < 5

    row = _reload(version)
    assert row.mirror_state == MirrorState.FAILED
    assert row.mirror_error.startswith("MlflowException: ") and "127.0.0.1" in row.mirror_error
    assert (row.mlflow_model_name, row.mlflow_version, row.mirrored_at) == ("", "", None)
    assert row.artifact_sha256 == version.artifact_sha256  # the registration itself stands

    settings.MLFLOW_TRACKING_URI = settings.MLFLOW_REGISTRY_URI = reachable
    result = version_mirror(version_id=version.pk)

    row = _reload(version)
    assert (row.mirror_state, row.mirror_error) == (MirrorState.MIRRORED, "")
    assert row.mlflow_version == result.mlflow_version
    assert [str(v.version) for v in _mlflow_versions(mlflow_client(), "ChestFM")] == [result.mlflow_version]


def test_default_http_settings_give_up_on_unreachable_mlflow_within_seconds(register_version, chest_fm, settings, monkeypatch):
    """Without the mirror's defaults MLflow would retry a refused connection for about four minutes."""
    from mlflow.exceptions import MlflowException

    for name in HTTP_DEFAULTS:
        monkeypatch.setenv(name, "0")  # recorded first, so the teardown also undoes what the mirror sets
        monkeypatch.delenv(name)
    version = register_version(chest_fm, "1.0.0")
    settings.MLFLOW_TRACKING_URI = settings.MLFLOW_REGISTRY_URI = UNREACHABLE

    started = time.monotonic()
    with pytest.raises(MlflowException):
        version_mirror(version_id=version.pk)

    assert time.monotonic() - started < 10
    assert _reload(version).mirror_state == MirrorState.FAILED


@pytest.mark.parametrize(
    "root,expected",
    [
        ("", None),
        ("/srv/mlartifacts", "file:///srv/mlartifacts"),
        ("file:///srv/mlartifacts", "file:///srv/mlartifacts"),
        ("mlflow-artifacts:/radtrust", "mlflow-artifacts:/radtrust"),
        ("s3://bucket/radtrust", "s3://bucket/radtrust"),
    ],
)
def test_experiment_artifact_location(root, expected):
    from registry.mlflow_mirror import artifact_location

    assert artifact_location(root) == expected
