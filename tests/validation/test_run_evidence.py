"""What a run leaves beside its report: its case table, charts and flags, and against a
baseline run the drift and degradation alerts; once, whatever the broker redelivers."""

from __future__ import annotations

import pytest

from compliance.choices import AlertStatus
from compliance.models import Alert
from registry.models import Dataset
from registry.services import record_create
from tests.factories import DataUseGrantFactory
from validation import services
from validation.baselines import run_set_baseline
from validation.choices import RunFileKind, RunStatus
from validation.models import CaseFlag, RunFile

CONFIG = {"n_resamples": 50, "min_patients": 5, "analyses": ["calibration", "drift", "uncertainty"], "target_risk": 0.05}


def _dataset(run_setup, write_dataset, name: str, **kwargs) -> Dataset:
    """More North data, granted to the provider like run_setup's."""
    root = write_dataset(name, **kwargs)
    dataset = record_create(
        model=Dataset,
        actor=run_setup["engineer"],
        fields={"name": name, "institution": run_setup["dataset"].institution, "modality": "DX", "location": str(root)},
    )
    DataUseGrantFactory(dataset=dataset, grantee=run_setup["model"].provider, purpose="performance_monitoring")
    return dataset


def _run(run_setup, dataset=None, **kwargs):
    run = services.run_create(
        actor=run_setup["engineer"],
        version=run_setup["version"],
        dataset=dataset or run_setup["dataset"],
        config=kwargs.pop("config", CONFIG),
        **kwargs,
    )
    assert services.run_execute(run_id=run.pk, worker="w") == RunStatus.SUCCEEDED, run.error
    run.refresh_from_db()
    return run


@pytest.fixture
def baseline_run(run_setup):
    run = _run(run_setup, config={**CONFIG, "n_resamples": 50})
    return run_set_baseline(actor=run_setup["engineer"], run=run)


def test_a_run_keeps_its_case_table_charts_and_flags(run_setup):
    run = _run(run_setup)
    files = {f.name: f for f in run.files.all()}
    assert files["cases.npz"].kind == RunFileKind.CASE_TABLE
    assert {"charts/roc-pneumothorax.svg", "charts/reliability-pneumothorax.svg"} <= set(files)
    assert all(f.storage_name.startswith(f"runs/{run.pk}/attempt-1/") for f in files.values())
    assert "no baseline run" in run.results["drift"]["error"]
    flagged = run.results["results"]["pneumothorax"]["uncertainty"]["flagged_cases"]
    rows = list(CaseFlag.objects.filter(run=run).order_by("-uncertainty").values_list("row", flat=True))
    assert rows == [c["row"] for c in flagged] and run.results["results"]["pneumothorax"]["uncertainty"]["n_flagged"] == len(rows)


def test_an_unreachable_target_risk_stores_every_flag_without_a_cutoff(run_setup):
    """The engine refers every case (cutoff None) when no coverage meets the target risk; the
    flags are stored as they are, not refused by the database."""
    import copy

    import numpy as np

    from radtrust_engine.calibration import case_flags
    from radtrust_engine.pipeline import Evaluation
    from radtrust_engine.report import RunReport
    from validation.run_outputs import run_outputs_save, run_outputs_write

    run = _run(run_setup)
    referral = {"target_risk": 1e-6, "reachable": False, "cutoff": None, "message": "target risk 1e-06 not reachable: every case is referred"}
    flagged = [{"row": i + 1, "image_path": f"img/{i}.dcm", "uncertainty": 0.6, "probability": 0.55, "tta_std": 0.01} for i in range(3)]
    assert case_flags([0.6, 0.6, 0.6], None).all()
    report = copy.deepcopy(run.results)  # the run's own report, its uncertainty section replaced
    report["results"]["pneumothorax"]["uncertainty"] = {"referral": referral, "flagged_cases": flagged, "n_flagged": 3}
    evaluation = Evaluation(run_report=RunReport.from_dict(report), timings={}, scores=np.zeros(0), case_index=np.zeros(0))
    outputs = run_outputs_write(run_id=run.pk, attempt=2, evaluation=evaluation)
    CaseFlag.objects.filter(run=run).delete()
    RunFile.objects.filter(run=run).delete()  # attempt 2 draws the same charts
    run_outputs_save(run, outputs)
    assert list(CaseFlag.objects.filter(run=run).order_by("row").values_list("row", "cutoff")) == [(1, None), (2, None), (3, None)]


def test_a_shifted_site_raises_input_drift_alerts_and_an_unshifted_one_does_not(run_setup, write_dataset, baseline_run):
    shifted = _run(run_setup, _dataset(run_setup, write_dataset, "brighter detector", seed=1, offset=1.5))
    assert shifted.baseline_id == baseline_run.pk
    drift = shifted.results["drift"]
    assert drift["baseline"]["run"] == baseline_run.pk and drift["baseline"]["same_dataset"] is False
    assert drift["inputs"]["image_mean"]["drifted"] and drift["inputs"]["image_mean"]["level"] == "major"
    alerts = Alert.objects.filter(run=shifted)
    assert {("input_drift", "image_mean"), ("input_drift", "image_p01")} <= set(alerts.values_list("kind", "subject"))
    alert = alerts.get(subject="image_mean")
    assert (alert.version_id, alert.baseline_run_id, alert.status) == (shifted.version_id, baseline_run.pk, AlertStatus.OPEN)
    assert alert.evidence["psi"] >= 0.25 and "image_mean drifted" in alert.message
    assert shifted.files.filter(name="charts/drift-image-mean.svg").exists()

    unshifted = _run(run_setup, _dataset(run_setup, write_dataset, "same detector", seed=2))
    assert not unshifted.results["drift"]["inputs"]["image_mean"]["drifted"]
    assert not Alert.objects.filter(run=unshifted, kind="input_drift").exists()


def test_a_redelivered_task_leaves_no_second_alert_or_file(run_setup, write_dataset, baseline_run):
    shifted = _run(run_setup, _dataset(run_setup, write_dataset, "brighter", seed=1, offset=1.5))
    counts = (Alert.objects.filter(run=shifted).count(), RunFile.objects.filter(run=shifted).count(), CaseFlag.objects.filter(run=shifted).count())
    assert counts[0] > 0
    assert services.run_execute(run_id=shifted.pk, worker="w2") is None
    assert (
        Alert.objects.filter(run=shifted).count(),
        RunFile.objects.filter(run=shifted).count(),
        CaseFlag.objects.filter(run=shifted).count(),
    ) == counts


def test_a_baseline_of_another_version_is_refused_with_the_reason(run_setup, register_version, api_client):
    other = register_version(run_setup["model"], "1.1.0", output_schema=run_setup["version"].output_schema)
    foreign = services.run_create(actor=run_setup["engineer"], version=other, dataset=run_setup["dataset"], config=CONFIG)
    response = api_client(run_setup["engineer"]).post(
        "/api/validation-runs/",
        {
            "version": run_setup["version"].pk,
            "dataset": run_setup["dataset"].pk,
            "baseline": foreign.pk,
        },
        format="json",
    )
    assert response.status_code == 400 and "another version" in response.json()["baseline"][0]


def test_set_baseline_refuses_an_unfinished_run_and_moves_the_mark(run_setup, api_client):
    client = api_client(run_setup["engineer"])
    queued = services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"], config=CONFIG)
    response = client.post(f"/api/validation-runs/{queued.pk}/set-baseline/")
    assert response.status_code == 409 and "must have succeeded" in response.json()["detail"]
    first, second = _run(run_setup), _run(run_setup)
    assert client.post(f"/api/validation-runs/{first.pk}/set-baseline/").json()["is_baseline"] is True
    assert client.post(f"/api/validation-runs/{second.pk}/set-baseline/").status_code == 200
    first.refresh_from_db()
    assert not first.is_baseline and run_setup["version"].validation_runs.get(is_baseline=True) == second


def test_run_file_content_is_served_checked_against_its_hash(run_setup, api_client, personas):
    run = _run(run_setup)
    chart = run.files.get(name="charts/roc-pneumothorax.svg")
    client = api_client(personas["auditor"])
    response = client.get(f"/api/run-files/{chart.pk}/content/")
    assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml" and response.content.startswith(b"<?xml")
    assert "default-src 'none'" in response["Content-Security-Policy"]
    from django.core.files.storage import default_storage

    with default_storage.open(chart.storage_name, "wb") as handle:
        handle.write(b"<svg>tampered</svg>")
    response = client.get(f"/api/run-files/{chart.pk}/content/")
    assert response.status_code == 409 and "sha256" in response.json()["detail"]
    assert api_client(personas["clinician_north"]).get(f"/api/run-files/{chart.pk}/content/").status_code == 403


def test_an_officer_acknowledges_then_resolves_an_alert_with_a_note(run_setup, write_dataset, baseline_run, api_client, personas):
    _run(run_setup, _dataset(run_setup, write_dataset, "brighter", seed=1, offset=1.5))
    alert = Alert.objects.filter(kind="input_drift").first()
    client = api_client(personas["officer"])
    assert client.post(f"/api/alerts/{alert.pk}/acknowledge/", {}, format="json").json()["status"] == "acknowledged"
    response = client.post(f"/api/alerts/{alert.pk}/resolve/", {}, format="json")
    assert response.status_code == 400 and "note" in response.json()
    response = client.post(f"/api/alerts/{alert.pk}/resolve/", {"note": "Detector recalibrated by the vendor."}, format="json")
    assert response.json()["status"] == "resolved" and response.json()["handled_by"] == personas["officer"].username
    assert client.post(f"/api/alerts/{alert.pk}/acknowledge/", {}, format="json").status_code == 409


def test_explainability_overlays_are_stored_as_png_files_named_in_the_report(run_setup, api_client, personas):
    run = _run(run_setup, config={**CONFIG, "analyses": ["explainability"], "explain_cases": 4, "rise_masks": 100})
    report = run.results["results"]["pneumothorax"]["explainability"]
    assert report["n_cases"] == 4 and set(report["methods"]) == {"occlusion", "rise"}
    overlays = {o["file"] for o in report["overlays"]}
    stored = set(run.files.filter(kind=RunFileKind.SALIENCY).values_list("name", flat=True))
    assert len(overlays) == 8 and overlays == stored
    png = run.files.filter(kind=RunFileKind.SALIENCY).first()
    provider = api_client(personas["engineer"])
    assert provider.get(f"/api/run-files/{png.pk}/content/").status_code == 404  # North's overlay until North shares it
    Dataset.objects.filter(pk=run.dataset_id).update(case_outputs_shared_with_provider=True)
    response = provider.get(f"/api/run-files/{png.pk}/content/")
    assert response.status_code == 200 and response["Content-Type"] == "image/png" and response.content[:8] == b"\x89PNG\r\n\x1a\n"
