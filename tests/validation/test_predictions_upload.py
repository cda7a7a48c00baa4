"""Outputs produced elsewhere ("bring your own outputs", ``radtrust_engine.external_outputs``):
the checks on the predictions file, the analyses that need no inference, and the statement
that RadTrust did not run the model."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from radtrust_engine.external_outputs import NOT_RUN_STATEMENT, PredictionsError, evaluate_predictions, read_predictions
from radtrust_engine.loading import ATTRIBUTE_COLUMNS, Manifest
from radtrust_engine.metrics import auroc
from radtrust_engine.pipeline import SuiteConfig

CLASSES = ("nodule",)


def _manifest(n=120, seed=3):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 1)) < 0.4).astype(np.int8)
    attributes = {name: [None] * n for name in ATTRIBUTE_COLUMNS}
    attributes["sex"] = ["F" if i % 2 else "M" for i in range(n)]
    attributes["age"] = [30.0 + (i % 50) for i in range(n)]
    return Manifest(
        root=Path("/nonexistent"),
        image_paths=[f"img/{i:04d}.png" for i in range(n)],
        label_names=CLASSES,
        labels=labels,
        patient_ids=[f"p{i // 2}" for i in range(n)],
        study_dates=[None] * n,
        attributes=attributes,
    )


def _csv(manifest, scores, *, extra_rows=(), uncertainty=None):
    lines = ["case_id,nodule" + (",uncertainty" if uncertainty is not None else "")]
    for i, case in enumerate(manifest.image_paths):
        line = f"{case},{float(scores[i])!r}"
        if uncertainty is not None:
            line += f",{uncertainty[i]}"
        lines.append(line)
    lines += list(extra_rows)
    return "\n".join(lines).encode()


def _scores(manifest, seed=0):
    rng = np.random.default_rng(seed)
    y = manifest.labels[:, 0]
    return np.clip(0.35 + 0.3 * y + rng.normal(0, 0.15, y.size), 0, 1)


def _read(data, manifest, name="predictions.csv"):
    return read_predictions(data, name, sha256=hashlib.sha256(data).hexdigest(), class_names=CLASSES, case_ids=manifest.image_paths)


def test_predictions_in_any_order_come_back_in_the_manifest_order():
    manifest = _manifest()
    scores = _scores(manifest)
    data = _csv(manifest, scores, uncertainty=np.linspace(0, 1, len(manifest)))
    header, *rows = data.decode().splitlines()
    shuffled = "\n".join([header, *reversed(rows)]).encode()
    predictions = _read(shuffled, manifest)
    np.testing.assert_allclose(predictions.scores[:, 0], scores)
    np.testing.assert_allclose(predictions.uncertainty, np.linspace(0, 1, len(manifest)))


def test_parquet_predictions_are_read_like_csv():
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    manifest = _manifest()
    scores = _scores(manifest)
    buffer = io.BytesIO()
    pq.write_table(pa.table({"case_id": manifest.image_paths, "nodule": scores}), buffer)
    predictions = _read(buffer.getvalue(), manifest, "outputs.parquet")
    np.testing.assert_allclose(predictions.scores[:, 0], scores)


def test_the_analyses_that_need_no_inference_run_and_the_report_says_who_ran_the_model():
    manifest = _manifest()
    scores = _scores(manifest)
    predictions = _read(_csv(manifest, scores), manifest)
    config = SuiteConfig.from_dict({"attributes": ["sex"], "analyses": ["calibration", "robustness", "explainability"], "n_resamples": 200})
    evaluation = evaluate_predictions(predictions, manifest, task="binary", thresholds={"nodule": 0.5}, config=config)
    report = evaluation.run_report
    assert report.model["run_by_radtrust"] is False and report.model["statement"] == NOT_RUN_STATEMENT
    assert report.inference["forward_passes"] == 0
    assert report.config["analyses"] == ["calibration"]  # robustness and explainability need the model
    result = report.results["nodule"]
    assert result.overall.metrics["auroc"].value == pytest.approx(auroc(manifest.labels[:, 0], scores))
    assert "calibration" in result.analyses
    assert {g.name for g in result.subgroups} >= {"sex=F", "sex=M"}
    assert evaluation.report["model"]["run_by_radtrust"] is False  # the stored JSON form


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda rows: rows + ["img/0001.png,0.5"], r"Case ids given twice: row 121 \(img/0001.png, first on row 2\)"),
        (lambda rows: rows[:-1], r"Manifest cases without outputs: img/0119.png"),
        (lambda rows: rows + ["img/9999.png,0.5"], r"not in the dataset manifest: row 121 \(img/9999.png\)"),
        (lambda rows: [rows[0].replace(rows[0].split(",")[1], "1.5")] + rows[1:], r"A probability is missing or outside \[0, 1\] on rows 1 \("),
        (lambda rows: rows[:3] + [",0.5"] + rows[3:], r"No case id on rows 4 \("),
        (lambda rows: [r.replace(r.split(",")[1], "nan") for r in rows[:7]] + rows[7:], r"outside \[0, 1\] on rows 1, 2, 3, 4, 5 and 2 more"),
    ],
)
def test_bad_predictions_name_the_first_offending_rows(mutate, message):
    manifest = _manifest()
    header, *rows = _csv(manifest, _scores(manifest)).decode().splitlines()
    data = "\n".join([header, *mutate(rows)]).encode()
    with pytest.raises(PredictionsError, match=message):
        _read(data, manifest)


def test_a_file_that_is_not_utf8_or_lacks_a_class_column_is_refused():
    manifest = _manifest()
    with pytest.raises(PredictionsError, match="not UTF-8 text"):
        _read(b"case_id,nodule\nimg/0000.png,\xff\n", manifest)
    with pytest.raises(PredictionsError, match="no column for the version's classes nodule"):
        _read(b"case_id,other\nimg/0000.png,0.1\n", manifest)
    with pytest.raises(PredictionsError, match='no "case_id" column'):
        _read(b"image,nodule\nimg/0000.png,0.1\n", manifest)


# --- the server: a run from uploaded outputs -----------------------------------------------------


def _upload_csv(n=60, *, seed=5, rows=None):
    rng = np.random.default_rng(seed)
    lines = ["case_id,pneumothorax"]
    for i in range(n):
        p = float(np.clip(0.3 + 0.4 * (i % 3 == 0) + rng.normal(0, 0.15), 0, 1))
        lines.append(f"img/{i}.npy,{p!r}")
    return "\n".join(rows if rows is not None else lines).encode()


def _upload(run_setup, data, **kwargs):
    from validation.uploaded_outputs import run_from_predictions

    kwargs.setdefault("artifact_sha256", run_setup["version"].artifact_sha256)
    kwargs.setdefault("config", {"n_resamples": 50, "min_patients": 5})
    return run_from_predictions(
        actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"], predictions=data, filename="outputs.csv", **kwargs
    )


@pytest.mark.django_db
def test_a_run_from_uploaded_outputs_is_stored_succeeded_and_says_radtrust_did_not_run_the_model(run_setup):
    from core.models import AuditEvent
    from validation.choices import OutputsSource, RunStatus

    data = _upload_csv()
    run = _upload(run_setup, data)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.outputs_source == OutputsSource.UPLOADED
    assert run.predictions_sha256 == hashlib.sha256(data).hexdigest() and len(run.manifest_sha256) == 64
    assert run.artifact_sha256 == ""  # no artifact was verified: RadTrust loaded nothing
    assert run.results["model"]["run_by_radtrust"] is False and "did not run" in run.results["model"]["statement"]
    overall = run.results["results"]["pneumothorax"]["overall"]
    assert overall["n_cases"] == 60 and overall["metrics"]["auroc"]["value"] > 0.8
    assert run.files.filter(name="cases.npz").exists()  # later runs can measure drift against it
    actions = list(AuditEvent.objects.filter(object_type="validation.validationrun", object_id=str(run.pk)).values_list("action", flat=True))
    assert actions[-1] == "succeed"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"artifact_sha256": "0" * 64}, "artifact_sha256", "upload outputs of the registered artifact"),
        ({"predictions": "dup"}, "predictions", "Case ids given twice: row 61 (img/0.npy, first on row 1)"),
        ({"predictions": "range"}, "predictions", "A probability is missing or outside [0, 1] on rows 1 "),
        ({"predictions": "bytes"}, "predictions", "not UTF-8 text"),
    ],
)
def test_bad_uploads_store_nothing(run_setup, change, field, message):
    from django.core.exceptions import ValidationError

    from validation.models import ValidationRun

    lines = _upload_csv().decode().splitlines()
    data = {
        "dup": "\n".join([*lines, "img/0.npy,0.2"]).encode(),
        "range": "\n".join([lines[0], "img/0.npy,-0.1", *lines[2:]]).encode(),
        "bytes": b"case_id,pneumothorax\nimg/0.npy,\xff0.1\n",
    }.get(change.get("predictions"), _upload_csv())
    kwargs = {k: v for k, v in change.items() if k != "predictions"}
    with pytest.raises(ValidationError) as caught:
        _upload(run_setup, data, **kwargs)
    assert message in " ".join(caught.value.message_dict[field])
    assert not ValidationRun.objects.exists()


@pytest.mark.django_db
def test_the_trust_rules_weigh_uploaded_outputs(run_setup):
    """Traceability: a run from uploaded outputs does not count as verifying the artifact, and the
    share of runs in which RadTrust ran the model is its own criterion."""
    from compliance.trust.gather import version_evidence
    from compliance.trust.policy import rule_params
    from compliance.trust.rules import RULES
    from validation import services

    run = _upload(run_setup, _upload_csv())
    evidence = version_evidence(run_setup["version"])
    (only,) = evidence.runs
    assert only.outputs_uploaded is True

    def apply(rule):
        return RULES[rule].function(evidence, rule_params(rule, {}))

    assert apply("outputs_computed_here").value == 0.0 and "did not run the model" in apply("outputs_computed_here").explanation
    assert apply("artifact_verified").value is None  # no run loaded the artifact

    ran = services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"], config={"n_resamples": 50})
    services.run_execute(run_id=ran.pk, worker="w")
    evidence = version_evidence(run_setup["version"])
    assert apply("outputs_computed_here").value == 0.5 and apply("outputs_computed_here").inputs["uploaded_output_runs"] == [run.pk]
    assert apply("artifact_verified").value == 1.0


@pytest.mark.django_db
def test_the_api_takes_a_multipart_upload_and_refuses_a_hash_mismatch(run_setup, api_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = api_client(run_setup["engineer"])
    url = "/api/validation-runs/from-predictions/"

    def body(sha):
        return {
            "version": run_setup["version"].pk,
            "dataset": run_setup["dataset"].pk,
            "artifact_sha256": sha,
            "config": json.dumps({"n_resamples": 20}),
            "predictions": SimpleUploadedFile("outputs.csv", _upload_csv(), content_type="text/csv"),
        }

    refused = client.post(url, body("f" * 64), format="multipart")
    assert refused.status_code == 400 and "registered artifact" in json.dumps(refused.json())
    created = client.post(url, body(run_setup["version"].artifact_sha256), format="multipart")
    assert created.status_code == 201, created.content
    assert created.json()["outputs_source"] == "uploaded" and created.json()["status"] == "succeeded"
