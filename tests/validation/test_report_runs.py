"""Runs of generated reports (``validation.uploaded_reports``, ``radtrust_engine.report_runs``): a
report-generating model RadTrust does not run. The request checks the files and queues the run; the
worker's task (run here eagerly, the task body itself) claims it and evaluates the stored files
against the manifest's reference findings or against reference reports. Bad files are refused with
nothing stored; a redelivered task leaves one result."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from core.models import AuditEvent
from validation import services, tasks
from validation.choices import FailureReason, RunStatus
from validation.models import ReportRunUpload, ValidationRun

pytestmark = pytest.mark.django_db

N = 60  # the run_setup dataset: img/0.npy ... img/59.npy, pneumothorax on every third image, two images per patient
PLANTED = (1, 2, 4, 5)  # negatives whose report states a pneumothorax anyway: confabulations
MISSED = (3, 6)  # positives whose report says nothing of it: omissions
EFFUSIONS = (10, 11, 20, 22, 31)  # reference reports that describe an effusion the generated ones leave out


def _text(i: int) -> str:
    positive = i % 3 == 0
    if (positive and i not in MISSED) or i in PLANTED:
        return "Small right apical pneumothorax. Heart size is normal."
    if i in MISSED:
        return "Heart size is normal. Lungs are clear."
    return "No pneumothorax. No pleural effusion."


def _reference_text(i: int) -> str:
    pneumothorax = "Right apical pneumothorax." if i % 3 == 0 else "No pneumothorax."
    effusion = " Small left pleural effusion." if i in EFFUSIONS else " No pleural effusion."
    return pneumothorax + effusion


def _jsonl(lines=None, text=_text) -> bytes:
    rows = lines if lines is not None else [json.dumps({"case_id": f"img/{i}.npy", "report": text(i)}) for i in range(N)]
    return "\n".join(rows).encode()


@pytest.fixture
def sent(monkeypatch) -> list[tuple[int, str]]:
    """The (run, queue) of every run sent to the broker; the test then delivers it with ``_deliver``."""
    messages: list[tuple[int, str]] = []
    monkeypatch.setattr(tasks.run_execute, "apply_async", lambda args, queue: messages.append((args[0], queue)))
    return messages


def _post(client, run_setup, data: bytes, *, reference: bytes | None = None, **extra):
    body = {
        "version": run_setup["version"].pk,
        "dataset": run_setup["dataset"].pk,
        "artifact_sha256": run_setup["version"].artifact_sha256,
        "config": json.dumps({"n_resamples": 200, "attributes": ["site"], "min_patients": 5}),
        "reports": SimpleUploadedFile("reports.jsonl", data, content_type="application/jsonl"),
        **extra,
    }
    if reference is not None:
        body["reference_reports"] = SimpleUploadedFile("reference.jsonl", reference, content_type="application/jsonl")
    return client.post("/api/validation-runs/from-reports/", body, format="multipart")


def _queued(client, run_setup, data: bytes, capture, **kwargs) -> ValidationRun:
    """Post the files; the run, queued and sent once the request's transaction committed."""
    with capture(execute=True):
        response = _post(client, run_setup, data, **kwargs)
    assert response.status_code == 201, response.content
    return ValidationRun.objects.get(pk=response.json()["id"])


def _deliver(run: ValidationRun) -> str | None:
    """One delivery of the run's task, as a worker executes it."""
    return tasks.run_execute.apply((run.pk,)).get()


def _finding(run: ValidationRun, name: str) -> dict:
    (finding,) = [f for f in run.results["report_generation"]["findings"] if f["finding"] == name]
    return finding


def test_the_request_queues_the_run_and_the_worker_finds_the_planted_confabulations(
    run_setup, api_client, client, sent, django_capture_on_commit_callbacks
):
    run = _queued(api_client(run_setup["engineer"]), run_setup, _jsonl(), django_capture_on_commit_callbacks)
    assert (run.status, run.results, run.outputs_source, run.queue) == (RunStatus.QUEUED, None, "uploaded", "default")
    assert sent == [(run.pk, "default")]  # no accelerator needed: the default queue's workers take it
    upload = ReportRunUpload.objects.get(run=run)
    assert upload.reference == "labels" and (Path(settings.MEDIA_ROOT) / upload.reports_storage_name).read_bytes() == _jsonl()

    assert _deliver(run) == RunStatus.SUCCEEDED
    run.refresh_from_db()
    evaluation = run.results["report_generation"]
    assert run.results["results"] == {} and run.results["model"]["run_by_radtrust"] is False
    assert evaluation["reference"] == "labels" and "label columns" in evaluation["reference_text"]
    finding = _finding(run, "Pneumothorax")
    negatives, positives = N - N // 3, N // 3
    assert finding["n_reference_positive"] == positives
    assert finding["confabulation_rate"]["value"] == pytest.approx(len(PLANTED) / negatives)
    assert finding["omission_rate"]["value"] == pytest.approx(len(MISSED) / positives)
    assert finding["confabulation_rate"]["ci_low"] < finding["confabulation_rate"]["value"] < finding["confabulation_rate"]["ci_high"]
    assert evaluation["overall"]["confabulating_reports"]["value"] == pytest.approx(len(PLANTED) / N)
    assert {g["value"] for g in evaluation["subgroups"]} == {"A", "B"}
    assert run.summary["report_generation"]["n_reports"] == N and run.summary["report_generation"]["reference"] == "labels"
    assert set(run.timings) >= {"manifest", "metrics"} and run.artifact_sha256 == ""  # no artifact was loaded
    actions = AuditEvent.objects.filter(object_type="validation.validationrun", object_id=str(run.pk)).values_list("action", flat=True)
    assert list(actions) == ["create", "claim", "succeed"]

    client.force_login(run_setup["engineer"])
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert "Generated reports against the reference findings" in page and "Confabulation rate (CI)" in page
    assert "compared with the dataset manifest&#x27;s reference findings (its label columns" in page
    assert "site = A" in page and "Explainability: Not applicable for generated reports" in page
    assert "Robustness: Not applicable" in page


def test_reference_reports_are_read_by_the_same_extractor_and_compared(run_setup, api_client, client, sent, django_capture_on_commit_callbacks):
    reference = _jsonl(text=_reference_text)
    run = _queued(api_client(run_setup["engineer"]), run_setup, _jsonl(), django_capture_on_commit_callbacks, reference=reference)
    upload = ReportRunUpload.objects.get(run=run)
    assert (upload.reference, upload.reference_name) == ("reports", "reference.jsonl")

    assert _deliver(run) == RunStatus.SUCCEEDED
    run.refresh_from_db()
    evaluation = run.results["report_generation"]
    assert evaluation["reference"] == "reports" and "reference reports" in evaluation["reference_text"]
    pneumothorax, effusion = _finding(run, "Pneumothorax"), _finding(run, "Pleural Effusion")
    assert pneumothorax["confabulation_rate"]["value"] == pytest.approx(len(PLANTED) / (N - N // 3))
    assert pneumothorax["omission_rate"]["value"] == pytest.approx(len(MISSED) / (N // 3))
    # every effusion of the reference reports is left out of the generated ones, none stated wrongly
    assert effusion["n_reference_positive"] == len(EFFUSIONS) and effusion["omission_rate"]["value"] == 1.0
    assert effusion["confabulation_rate"]["value"] == 0.0 and effusion["sensitivity"]["value"] == 0.0

    client.force_login(run_setup["engineer"])
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert "Generated reports against reference reports" in page and "same rule-based extractor read" in page


def test_a_small_subgroup_shows_below_the_minimum_never_its_count(run_setup, personas, client, sent, django_capture_on_commit_callbacks):
    from validation.uploaded_reports import run_from_reports

    with django_capture_on_commit_callbacks(execute=True):
        run = run_from_reports(
            actor=run_setup["engineer"],
            version=run_setup["version"],
            dataset=run_setup["dataset"],
            reports=_jsonl(),
            filename="reports.jsonl",
            artifact_sha256=run_setup["version"].artifact_sha256,
            config={"n_resamples": 100, "attributes": ["site"], "min_patients": 20},  # 15 patients per site
        )
    assert _deliver(run) == RunStatus.SUCCEEDED
    run.refresh_from_db()
    assert all(g["suppressed"] and g["n_patients"] is None for g in run.results["report_generation"]["subgroups"])
    client.force_login(personas["officer"])
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert "&lt;20" in page and "suppressed: " in page


def _nothing_stored() -> bool:
    uploads = Path(settings.MEDIA_ROOT) / "uploads"
    return not ValidationRun.objects.exists() and not ReportRunUpload.objects.exists() and not (uploads.exists() and any(uploads.rglob("*.*")))


ROWS = [json.dumps({"case_id": f"img/{i}.npy", "report": _text(i)}) for i in range(N)]
BAD_FILES = {
    "empty": lambda: _jsonl([*ROWS[:2], json.dumps({"case_id": "img/2.npy", "report": "  "}), *ROWS[3:]]),
    "duplicate": lambda: _jsonl([*ROWS, ROWS[0]]),
    "missing": lambda: _jsonl(ROWS[:-1]),
    "unknown": lambda: _jsonl([*ROWS, json.dumps({"case_id": "img/999.npy", "report": "No pneumothorax."})]),
    "bytes": lambda: _jsonl(ROWS[:1]) + b"\n" + b'{"case_id": "img/1.npy", "report": "\xff"}',
}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("empty", "Empty report text on line 3 (img/2.npy)"),
        ("duplicate", "Case ids given twice on line 61 (img/0.npy)"),
        ("missing", "Manifest cases without a generated report: img/59.npy"),
        ("unknown", "Case ids not in the dataset manifest: img/999.npy"),
        ("bytes", "not UTF-8 text (first bad byte on line 2)"),
    ],
)
def test_bad_reports_files_are_400_naming_the_first_rows_and_store_nothing(run_setup, api_client, sent, bad, message):
    response = _post(api_client(run_setup["engineer"]), run_setup, BAD_FILES[bad]())
    assert response.status_code == 400 and message in " ".join(response.json()["reports"]), response.content
    assert _nothing_stored() and sent == []


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("empty", "Empty report text on line 3 (img/2.npy); every case needs its reference report"),
        ("missing", "Manifest cases without a reference report: img/59.npy"),
        ("bytes", "The reference reports file is not UTF-8 text (first bad byte on line 2)"),
    ],
)
def test_bad_reference_reports_are_400_under_their_own_field(run_setup, api_client, sent, bad, message):
    response = _post(api_client(run_setup["engineer"]), run_setup, _jsonl(), reference=BAD_FILES[bad]())
    assert response.status_code == 400 and set(response.json()) == {"reference_reports"}, response.content
    assert message in " ".join(response.json()["reference_reports"])
    assert _nothing_stored() and sent == []


def test_a_wrong_artifact_hash_is_refused_and_only_the_providers_engineers_upload(run_setup, personas, api_client, sent):
    response = _post(api_client(run_setup["engineer"]), run_setup, _jsonl(), artifact_sha256="a" * 64)
    assert response.status_code == 400 and "registered artifact" in " ".join(response.json()["artifact_sha256"])
    assert _post(api_client(personas["officer"]), run_setup, _jsonl()).status_code == 403
    assert _post(api_client(personas["engineer_south"]), run_setup, _jsonl()).status_code in (400, 403)
    assert _nothing_stored() and sent == []


def test_a_schema_without_a_finding_the_extractor_reads_is_refused():
    from radtrust_engine.report_evaluation import ReportInputError
    from radtrust_engine.report_runs import finding_columns

    assert finding_columns(["pleural_effusion", "nodule_score"]) == {"pleural_effusion": "Pleural Effusion"}
    with pytest.raises(ReportInputError, match="nodule_score"):
        finding_columns(["nodule_score"])


def test_the_engine_and_the_server_name_the_same_references():
    from radtrust_engine.report_runs import REFERENCE_TEXT, Reference
    from validation.choices import ReportReference

    assert set(ReportReference.values) == {r.value for r in Reference} == set(REFERENCE_TEXT)


def test_a_redelivered_task_leaves_one_result(run_setup, api_client, sent, django_capture_on_commit_callbacks):
    """A worker dies after claiming the run (nothing written but the claim); the sweeper re-queues it
    once the lease expired, the next delivery evaluates it, and every later delivery does nothing."""
    run = _queued(api_client(run_setup["engineer"]), run_setup, _jsonl(), django_capture_on_commit_callbacks)
    dead = services.run_claim(run_id=run.pk, worker="w1")
    run.refresh_from_db()
    assert (run.status, run.results, run.summary) == (RunStatus.RUNNING, None, {})  # nothing half-written
    ValidationRun.objects.filter(pk=run.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.run_sweep()["requeued"] == [run.pk]
    assert sent[-1] == (run.pk, "default")

    assert _deliver(run) == RunStatus.SUCCEEDED
    first = ValidationRun.objects.get(pk=run.pk)
    assert _deliver(run) is None  # the broker delivers the message again: the finished run is not claimed
    assert services._close(run.pk, dead, status=RunStatus.SUCCEEDED, action="succeed", results={"x": 1}) is None  # the dead attempt cannot write
    after = ValidationRun.objects.get(pk=run.pk)
    assert (after.attempt, after.results, after.finished_at) == (dead + 1, first.results, first.finished_at)
    actions = AuditEvent.objects.filter(object_type="validation.validationrun", object_id=str(run.pk)).values_list("action", flat=True)
    assert list(actions).count("succeed") == 1


@pytest.mark.parametrize("changed", ["upload", "manifest"])
def test_a_file_changed_after_the_upload_fails_the_run_with_its_reason(run_setup, api_client, sent, django_capture_on_commit_callbacks, changed):
    run = _queued(api_client(run_setup["engineer"]), run_setup, _jsonl(), django_capture_on_commit_callbacks)
    if changed == "upload":
        (Path(settings.MEDIA_ROOT) / run.report_upload.reports_storage_name).write_bytes(_jsonl(ROWS[:-1]))
    else:
        manifest = run_setup["root"] / "manifest.csv"
        manifest.write_text(manifest.read_text().replace(",p1,", ",p99,", 1))
    assert _deliver(run) == RunStatus.FAILED
    run.refresh_from_db()
    reason = {"upload": FailureReason.UPLOAD_CHANGED, "manifest": FailureReason.BAD_MANIFEST}[changed]
    assert run.error_reason == reason and run.results is None
    expected = {"upload": "is missing from storage or has changed since", "manifest": "the data changed since they were uploaded"}[changed]
    assert expected in run.error
    assert str(settings.MEDIA_ROOT) not in run.error and str(run_setup["root"]) not in run.error


def test_the_trust_rules_count_a_reports_run_as_outputs_from_elsewhere(run_setup, api_client, sent, django_capture_on_commit_callbacks):
    from compliance.trust.services import trust_assess

    run = _queued(api_client(run_setup["engineer"]), run_setup, _jsonl(), django_capture_on_commit_callbacks)
    _deliver(run)
    assessment = trust_assess(version=run_setup["version"], trigger="manual")
    traceability = {c["key"]: c for c in assessment.principles["traceability"]["criteria"]}
    assert traceability["outputs_computed_here"]["value"] == 0.0
    assert traceability["artifact_verified"]["value"] is None


def test_a_suite_without_resamples_reports_points_without_intervals(run_setup, api_client, sent, django_capture_on_commit_callbacks):
    body = {"config": json.dumps({"n_resamples": 0, "attributes": ["sex", "age_band"]})}
    run = _queued(api_client(run_setup["engineer"]), run_setup, _jsonl(), django_capture_on_commit_callbacks, **body)
    assert _deliver(run) == RunStatus.SUCCEEDED
    finding = _finding(ValidationRun.objects.get(pk=run.pk), "Pneumothorax")
    assert finding["confabulation_rate"]["value"] == pytest.approx(len(PLANTED) / (N - N // 3)) and finding["confabulation_rate"]["ci_low"] is None


def _unlabelled_manifest(root: Path) -> str:
    """A hospital's list of reported studies: the dataset's manifest without its label column."""
    lines = (root / "manifest.csv").read_text().splitlines()
    assert lines[0].endswith(",pneumothorax")
    (root / "reported.csv").write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n")
    return "reported.csv"


def test_reference_reports_need_no_label_column_in_the_manifest(run_setup, api_client, sent, django_capture_on_commit_callbacks):
    manifest = _unlabelled_manifest(run_setup["root"])
    reference = _jsonl(text=_reference_text)
    client = api_client(run_setup["engineer"])
    run = _queued(client, run_setup, _jsonl(), django_capture_on_commit_callbacks, reference=reference, manifest=manifest)
    assert _deliver(run) == RunStatus.SUCCEEDED
    run.refresh_from_db()
    evaluation = run.results["report_generation"]
    assert evaluation["reference"] == "reports" and run.results["dataset"]["label_names"] == []
    pneumothorax, effusion = _finding(run, "Pneumothorax"), _finding(run, "Pleural Effusion")
    assert pneumothorax["n_reference_positive"] == N // 3
    assert pneumothorax["confabulation_rate"]["value"] == pytest.approx(len(PLANTED) / (N - N // 3))
    assert pneumothorax["omission_rate"]["value"] == pytest.approx(len(MISSED) / (N // 3))
    assert effusion["n_reference_positive"] == len(EFFUSIONS) and effusion["omission_rate"]["value"] == 1.0
    assert evaluation["overall"]["confabulating_reports"]["value"] == pytest.approx(len(PLANTED) / N)
    assert {g["value"] for g in evaluation["subgroups"]} == {"A", "B"}  # the attributes still come from the manifest

    # without reference reports the manifest's labels are the reference: the missing column is named, with the way out
    response = _post(client, run_setup, _jsonl(), manifest=manifest)
    assert response.status_code == 400 and set(response.json()) == {"manifest"}, response.content
    message = " ".join(response.json()["manifest"])
    assert "has no column 'pneumothorax'" in message and "upload them as reference_reports" in message
    assert str(run_setup["root"]) not in message

    # the manifest must still be the one its datasheet describes
    type(run_setup["dataset"]).objects.filter(pk=run_setup["dataset"].pk).update(manifest_sha256="0" * 64)
    response = _post(client, run_setup, _jsonl(), reference=reference, manifest=manifest)
    assert response.status_code == 400 and "the data changed since it was documented" in " ".join(response.json()["manifest"])
    assert ValidationRun.objects.count() == 1 and len(sent) == 1


@pytest.mark.parametrize(
    ("schema", "reference", "message"),
    [
        (["nodule_score"], False, "None of the output schema's classes (nodule_score) is a finding the extractor reads"),
        (["pneumothorax", "pleural_effusion"], False, "has no column 'pleural_effusion'"),
        (["nodule_score"], True, None),  # reference reports read no label: the schema does not matter
    ],
)
def test_an_output_schema_changed_after_the_upload_fails_the_run_with_its_reason(
    run_setup, api_client, sent, django_capture_on_commit_callbacks, schema, reference, message
):
    extra = {"reference": _jsonl(text=_reference_text)} if reference else {}
    run = _queued(api_client(run_setup["engineer"]), run_setup, _jsonl(), django_capture_on_commit_callbacks, **extra)
    version = run_setup["version"]
    type(version).objects.filter(pk=version.pk).update(output_schema={"class_names": schema, "thresholds": {}})
    if message is None:
        assert _deliver(run) == RunStatus.SUCCEEDED
        return
    assert _deliver(run) == RunStatus.FAILED
    run.refresh_from_db()
    assert (run.error_reason, run.get_error_reason_display(), run.results) == (
        FailureReason.SCHEMA_CHANGED,
        "Output schema changed since the upload",
        None,
    )
    assert run.error.startswith("The version's output schema changed since the reports were accepted: ") and message in run.error
    assert "upload the reports again as a new run" in run.error and str(run_setup["root"]) not in run.error
