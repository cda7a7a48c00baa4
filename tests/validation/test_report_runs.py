"""Runs of generated reports (``validation.uploaded_reports``, ``radtrust_engine.report_runs``): a
report-generating model RadTrust does not run, evaluated from its reports against the manifest's
reference findings; the run page's tables, and bad files refused with nothing stored."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from validation.models import ValidationRun

N = 60  # the run_setup dataset: img/0.npy ... img/59.npy, pneumothorax on every third image, two images per patient
PLANTED = (1, 2, 4, 5)  # negatives whose report states a pneumothorax anyway: confabulations
MISSED = (3, 6)  # positives whose report says nothing of it: omissions


def _text(i: int) -> str:
    positive = i % 3 == 0
    if (positive and i not in MISSED) or i in PLANTED:
        return "Small right apical pneumothorax. Heart size is normal."
    if i in MISSED:
        return "Heart size is normal. Lungs are clear."
    return "No pneumothorax. No pleural effusion."


def _jsonl(lines=None) -> bytes:
    rows = lines if lines is not None else [json.dumps({"case_id": f"img/{i}.npy", "report": _text(i)}) for i in range(N)]
    return "\n".join(rows).encode()


def _post(client, run_setup, data: bytes, **extra):
    body = {
        "version": run_setup["version"].pk,
        "dataset": run_setup["dataset"].pk,
        "artifact_sha256": run_setup["version"].artifact_sha256,
        "config": json.dumps({"n_resamples": 200, "attributes": ["site"], "min_patients": 5}),
        "reports": SimpleUploadedFile("reports.jsonl", data, content_type="application/jsonl"),
        **extra,
    }
    return client.post("/api/validation-runs/from-reports/", body, format="multipart")


@pytest.mark.django_db
def test_generated_reports_are_evaluated_and_the_planted_confabulations_found(run_setup, api_client, client):
    response = _post(api_client(run_setup["engineer"]), run_setup, _jsonl())
    assert response.status_code == 201, response.content
    assert response.json()["outputs_source"] == "uploaded" and response.json()["status"] == "succeeded"
    run = ValidationRun.objects.get()
    evaluation = run.results["report_generation"]
    assert run.results["results"] == {} and run.results["model"]["run_by_radtrust"] is False
    (finding,) = [f for f in evaluation["findings"] if f["finding"] == "Pneumothorax"]
    negatives, positives = N - N // 3, N // 3
    assert finding["n_reference_positive"] == positives
    assert finding["confabulation_rate"]["value"] == pytest.approx(len(PLANTED) / negatives)
    assert finding["omission_rate"]["value"] == pytest.approx(len(MISSED) / positives)
    assert finding["confabulation_rate"]["ci_low"] < finding["confabulation_rate"]["value"] < finding["confabulation_rate"]["ci_high"]
    assert evaluation["overall"]["confabulating_reports"]["value"] == pytest.approx(len(PLANTED) / N)
    assert {g["value"] for g in evaluation["subgroups"]} == {"A", "B"} and run.summary["report_generation"]["n_reports"] == N

    client.force_login(run_setup["engineer"])
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert "Generated reports against the reference findings" in page and "Confabulation rate (CI)" in page
    assert "site = A" in page and "Explainability: Not applicable for generated reports" in page
    assert "Robustness: Not applicable" in page


@pytest.mark.django_db
def test_a_small_subgroup_shows_below_the_minimum_never_its_count(run_setup, personas, client):
    from validation.uploaded_reports import run_from_reports

    run = run_from_reports(
        actor=run_setup["engineer"],
        version=run_setup["version"],
        dataset=run_setup["dataset"],
        reports=_jsonl(),
        filename="reports.jsonl",
        artifact_sha256=run_setup["version"].artifact_sha256,
        config={"n_resamples": 100, "attributes": ["site"], "min_patients": 20},  # 15 patients per site
    )
    assert all(g["suppressed"] and g["n_patients"] is None for g in run.results["report_generation"]["subgroups"])
    client.force_login(personas["officer"])
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert "&lt;20" in page and "suppressed: " in page


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("empty", "Empty report text on line 3 (img/2.npy)"),
        ("duplicate", "Case ids given twice on line 61 (img/0.npy)"),
        ("missing", "Manifest cases without a generated report: img/59.npy"),
        ("unknown", "Case ids not in the dataset manifest: img/999.npy"),
        ("bytes", "not UTF-8 text (first bad byte on line 2)"),
    ],
)
def test_bad_reports_files_are_400_naming_the_first_rows_and_store_nothing(run_setup, api_client, lines, message):
    rows = [json.dumps({"case_id": f"img/{i}.npy", "report": _text(i)}) for i in range(N)]
    data = {
        "empty": lambda: _jsonl([*rows[:2], json.dumps({"case_id": "img/2.npy", "report": "  "}), *rows[3:]]),
        "duplicate": lambda: _jsonl([*rows, rows[0]]),
        "missing": lambda: _jsonl(rows[:-1]),
        "unknown": lambda: _jsonl([*rows, json.dumps({"case_id": "img/999.npy", "report": "No pneumothorax."})]),
        "bytes": lambda: _jsonl(rows[:1]) + b"\n" + b'{"case_id": "img/1.npy", "report": "\xff"}',
    }[lines]()
    response = _post(api_client(run_setup["engineer"]), run_setup, data)
    assert response.status_code == 400 and message in json.dumps(response.json()), response.content
    assert not ValidationRun.objects.exists()


@pytest.mark.django_db
def test_a_wrong_artifact_hash_is_refused_and_only_the_providers_engineers_upload(run_setup, personas, api_client):
    response = _post(api_client(run_setup["engineer"]), run_setup, _jsonl(), artifact_sha256="a" * 64)
    assert response.status_code == 400 and "registered artifact" in json.dumps(response.json())
    assert _post(api_client(personas["officer"]), run_setup, _jsonl()).status_code == 403
    assert _post(api_client(personas["engineer_south"]), run_setup, _jsonl()).status_code in (400, 403)
    assert not ValidationRun.objects.exists()


def test_a_schema_without_a_finding_the_extractor_reads_is_refused():
    from radtrust_engine.report_evaluation import ReportInputError
    from radtrust_engine.report_runs import finding_columns

    assert finding_columns(["pleural_effusion", "nodule_score"]) == {"pleural_effusion": "Pleural Effusion"}
    with pytest.raises(ReportInputError, match="nodule_score"):
        finding_columns(["nodule_score"])


@pytest.mark.django_db
def test_the_trust_rules_count_a_reports_run_as_outputs_from_elsewhere(run_setup, api_client):
    from compliance.trust.services import trust_assess

    _post(api_client(run_setup["engineer"]), run_setup, _jsonl())
    assessment = trust_assess(version=run_setup["version"], trigger="manual")
    traceability = {c["key"]: c for c in assessment.principles["traceability"]["criteria"]}
    assert traceability["outputs_computed_here"]["value"] == 0.0
    assert traceability["artifact_verified"]["value"] is None


@pytest.mark.django_db
def test_a_suite_without_resamples_reports_points_without_intervals(run_setup, api_client):
    body = {"config": json.dumps({"n_resamples": 0, "attributes": ["sex", "age_band"]})}
    response = _post(api_client(run_setup["engineer"]), run_setup, _jsonl(), **body)
    assert response.status_code == 201, response.content
    (finding,) = [f for f in ValidationRun.objects.get().results["report_generation"]["findings"] if f["finding"] == "Pneumothorax"]
    assert finding["confabulation_rate"]["value"] == pytest.approx(len(PLANTED) / (N - N // 3)) and finding["confabulation_rate"]["ci_low"] is None
