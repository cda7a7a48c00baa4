"""The validation-run API: create, follow, cancel, scoped by role and institution; MLflow logging."""

from __future__ import annotations

import json

import pytest

from validation import services
from validation.choices import MlflowState, RunStatus
from validation.models import ValidationRun

URL = "/api/validation-runs/"


def _body(run_setup, **extra) -> dict:
    return {"version": run_setup["version"].pk, "dataset": run_setup["dataset"].pk, "config": {"n_resamples": 20}, **extra}


def test_create_follow_and_read_the_report(run_setup, api_client):
    client = api_client(run_setup["engineer"])
    response = client.post(URL, _body(run_setup), format="json")
    assert response.status_code == 201, response.content
    created = response.json()
    assert (created["status"], created["stage"], created["progress"], created["queue"]) == ("queued", "queued", 0.0, "gpu")
    assert created["requested_by"] == "engineer" and created["config"]["n_resamples"] == 20
    assert created["config"]["attributes"] == ["sex", "age_band", "race_ethnicity", "site", "scanner_manufacturer"]
    services.run_execute(run_id=created["id"], worker="w")
    detail = client.get(f"{URL}{created['id']}/").json()
    assert detail["status"] == "succeeded" and detail["progress"] == 1.0
    assert detail["results"]["results"]["pneumothorax"]["overall"]["n_cases"] == 60
    listed = client.get(URL, {"status": "succeeded"}).json()["results"]
    assert [r["id"] for r in listed] == [created["id"]] and "results" not in listed[0]
    assert listed[0]["summary"]["labels"]["pneumothorax"]["overall"]["auroc"]["value"] is not None


@pytest.mark.parametrize(
    ("extra", "field", "fragment"),
    [
        ({"config": {"n_resamples": "many"}}, "config", "n_resamples"),
        ({"config": {"intersections": [["sex"]]}}, "config", "2 or more"),
        ({"manifest": "/etc/passwd.csv"}, "manifest", "relative"),
        ({"version": 999999}, "version", "does not exist"),
    ],
)
def test_bad_requests_get_400_with_the_field(run_setup, api_client, extra, field, fragment):
    response = api_client(run_setup["engineer"]).post(URL, _body(run_setup, **extra), format="json")
    assert response.status_code == 400, response.content
    assert fragment in json.dumps(response.json()[field])
    assert not ValidationRun.objects.exists()


def test_another_institutions_engineer_cannot_validate_the_vendors_version(run_setup, personas, api_client):
    response = api_client(personas["engineer_south"]).post(URL, _body(run_setup), format="json")
    assert response.status_code == 400 and "does not exist" in json.dumps(response.json()["version"])


def test_engineers_see_runs_of_their_models_and_on_their_data_only(run_setup, personas, api_client, write_dataset):
    from registry.models import Dataset
    from registry.services import record_create
    from tests.factories import DataUseGrantFactory

    services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"])
    south_data = record_create(
        model=Dataset,
        actor=personas["engineer_south"],
        fields={
            "name": "South set",
            "institution": personas["engineer_south"].institution,
            "modality": "DX",
            "location": str(write_dataset("south")),
        },
    )
    DataUseGrantFactory(dataset=south_data, grantee=run_setup["model"].provider)
    on_south = services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=south_data)
    seen_by_south = [r["id"] for r in api_client(personas["engineer_south"]).get(URL).json()["results"]]
    assert seen_by_south == [on_south.pk]
    assert len(api_client(run_setup["engineer"]).get(URL).json()["results"]) == 2
    assert len(api_client(personas["auditor"]).get(URL).json()["results"]) == 2


def test_cancel_then_cancel_again_is_a_conflict(run_setup, api_client):
    client = api_client(run_setup["engineer"])
    run_id = client.post(URL, _body(run_setup), format="json").json()["id"]
    response = client.post(f"{URL}{run_id}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    again = client.post(f"{URL}{run_id}/cancel/")
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]


def test_creating_a_run_sends_the_task_after_commit(run_setup, django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr(services, "run_enqueue", lambda *, run_id, queue: sent.append((run_id, queue)))
    with django_capture_on_commit_callbacks(execute=True):
        run = services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"], on_site=True)
    assert sent == [(run.pk, "site.north")]


def test_a_succeeded_run_is_logged_to_mlflow_once_and_linked_to_the_model_version(run_setup):
    from registry.mlflow_mirror import mlflow_client, version_mirror
    from validation.mlflow_log import TAG_RUN_ID, run_log

    version_mirror(version_id=run_setup["version"].pk)
    run = services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"], config={"n_resamples": 20})
    services.run_execute(run_id=run.pk, worker="w")
    first = run_log(run_id=run.pk)
    ValidationRun.objects.filter(pk=run.pk).update(mlflow_state=MlflowState.PENDING)  # a retried task
    assert run_log(run_id=run.pk) == first
    run.refresh_from_db()
    assert (run.mlflow_state, run.mlflow_run_id) == (MlflowState.LOGGED, first)
    client = mlflow_client()
    experiments = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(experiments, filter_string=f"tags.`{TAG_RUN_ID}` = '{run.pk}'")
    assert [r.info.run_id for r in found] == [first]
    logged = found[0].data
    auroc = run.results["results"]["pneumothorax"]["overall"]["metrics"]["auroc"]
    assert logged.metrics["pneumothorax/overall/auroc"] == pytest.approx(auroc["value"])
    assert logged.metrics["pneumothorax/overall/auroc_ci_low"] == pytest.approx(auroc["ci_low"])
    assert any(key.startswith("pneumothorax/sex_F/") for key in logged.metrics)
    assert logged.params["suite.n_resamples"] == "20" and logged.params["artifact_sha256"] == run.artifact_sha256
    version = run_setup["version"]
    version.refresh_from_db()
    mv = client.get_model_version(version.mlflow_model_name, version.mlflow_version)
    assert mv.tags[f"radtrust.validation_run.{run.pk}"] == first
    report = client.download_artifacts(first, "validation_report.json")
    assert json.load(open(report))["results"] == run.results["results"]


def test_mlflow_logging_waits_for_the_version_mirror(run_setup):
    from validation.mlflow_log import VersionNotMirroredYet, run_log

    run = services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"], config={"n_resamples": 20})
    services.run_execute(run_id=run.pk, worker="w")
    with pytest.raises(VersionNotMirroredYet):
        run_log(run_id=run.pk)
    run.refresh_from_db()
    assert run.mlflow_state == MlflowState.FAILED and "mirrored" in run.mlflow_error
    assert run.status == RunStatus.SUCCEEDED
