"""Bad input ends a run as failed with a specific reason, or is refused when the run is created."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.exceptions import ValidationError

from radtrust_engine.artifacts import artifact_dir
from registry.services import artifact_root, record_update
from validation import services
from validation.choices import RunStatus
from validation.models import ValidationRun


def _run(run_setup, **config) -> ValidationRun:
    run = services.run_create(
        actor=run_setup["engineer"],
        version=run_setup["version"],
        dataset=run_setup["dataset"],
        config={"n_resamples": 20, "min_patients": 5, **config},
    )
    services.run_execute(run_id=run.pk, worker="w")
    run.refresh_from_db()
    return run


def _manifest(run_setup, text: str) -> None:
    (run_setup["root"] / "manifest.csv").write_text(text)


def _failed(run: ValidationRun, reason: str, *fragments: str) -> None:
    assert (run.status, run.error_reason) == (RunStatus.FAILED, reason), run.error
    for fragment in fragments:
        assert fragment in run.error
    assert run.results is None and run.finished_at is not None and run.lease_until is None


def test_missing_image_fails_the_run_naming_it(run_setup):
    (run_setup["root"] / "img" / "7.npy").unlink()
    _failed(_run(run_setup), "unreadable_images", "img/7.npy (row 8): file not found", "allows 0")


def test_a_few_unreadable_images_are_skipped_and_reported_when_allowed(run_setup):
    (run_setup["root"] / "img" / "7.npy").unlink()
    (run_setup["root"] / "img" / "9.npy").write_bytes(b"not an array")
    run = _run(run_setup, max_unreadable_share=0.05)
    assert run.status == RunStatus.SUCCEEDED
    assert [s["image_path"] for s in run.results["skipped"]] == ["img/7.npy", "img/9.npy"]
    assert run.results["dataset"]["n_evaluated"] == 58 and run.summary["n_skipped"] == 2


def test_unreadable_dicom_fails_the_run(run_setup):
    (run_setup["root"] / "img" / "bad.dcm").write_bytes(b"\x00" * 200)
    _manifest(run_setup, "image_path,patient_id,pneumothorax\nimg/0.npy,p0,0\nimg/bad.dcm,p1,1\n")
    _failed(_run(run_setup), "unreadable_images", "img/bad.dcm", "DICOM")


def test_manifest_without_a_required_column(run_setup):
    _manifest(run_setup, "image_path,pneumothorax\nimg/0.npy,0\n")
    _failed(_run(run_setup), "bad_manifest", "no column 'patient_id'")


def test_manifest_without_the_output_schemas_label_column(run_setup):
    _manifest(run_setup, "image_path,patient_id,effusion\nimg/0.npy,p0,0\n")
    _failed(_run(run_setup), "bad_manifest", "no column 'pneumothorax'")


def test_labels_outside_the_output_schema(run_setup):
    _manifest(run_setup, "image_path,patient_id,pneumothorax\nimg/0.npy,p0,2\n")
    _failed(_run(run_setup), "bad_manifest", "row 1", "labels must be 0 or 1")


def test_path_escaping_the_dataset_root(run_setup):
    _manifest(run_setup, "image_path,patient_id,pneumothorax\n../../secret.npy,p0,1\n")
    _failed(_run(run_setup), "bad_manifest", "could escape the dataset root")


def test_images_that_do_not_fit_the_model_signature(run_setup):
    np.save(run_setup["root"] / "img" / "0.npy", np.zeros((32, 48), np.float32))
    _failed(_run(run_setup), "bad_input", "img/0.npy", '"resize": [64, 64]')


def test_non_finite_model_outputs(run_setup):
    np.save(run_setup["root"] / "img" / "3.npy", np.full((64, 64), 3e38, np.float32))
    _failed(_run(run_setup), "non_finite_output", "NaN or infinite outputs for 1 of 60 cases (first: 3)")


def test_artifact_whose_hash_no_longer_matches_is_never_loaded(run_setup):
    version = run_setup["version"]
    stored = artifact_dir(artifact_root(), version.artifact_sha256) / version.artifact_files[0]["name"]
    stored.chmod(0o644)
    stored.write_bytes(stored.read_bytes()[:-10] + b"0123456789")
    run = _run(run_setup)
    _failed(run, "artifact_mismatch", "failed verification and was not loaded")
    assert run.device == {}


def test_manifest_changed_since_the_datasheet_recorded_it(run_setup):
    record_update(instance=run_setup["dataset"], fields={"manifest_sha256": "0" * 64})
    _failed(_run(run_setup), "bad_manifest", "the data changed since it was documented")


def test_missing_manifest_file(run_setup):
    (run_setup["root"] / "manifest.csv").unlink()
    _failed(_run(run_setup), "bad_manifest", "manifest 'manifest.csv' not found")


def test_invalid_preprocessing_spec_fails_with_its_reason(run_setup):
    from registry.models import ModelVersion

    ModelVersion.objects.filter(pk=run_setup["version"].pk).update(preprocessing={"resise": [64, 64]})
    _failed(_run(run_setup), "bad_config", "did you mean 'resize'")


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    [
        ({"config": {"n_resamples": -1}}, "config", "'n_resamples' must be a whole number"),
        ({"config": {"attributes": ["shoe_size"]}}, "config", "unknown attribute(s) shoe_size"),
        ({"config": {"bogus": 1}}, "config", "unknown suite option(s): bogus"),
        ({"manifest": "../elsewhere/manifest.csv"}, "manifest", "without '..'"),
        ({"manifest": "manifest.txt"}, "manifest", ".csv or .parquet"),
    ],
)
def test_bad_requests_are_refused_at_creation(run_setup, kwargs, field, fragment):
    with pytest.raises(ValidationError) as caught:
        services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"], **kwargs)
    assert fragment in " ".join(caught.value.message_dict[field])
    assert not ValidationRun.objects.exists()


def test_dataset_outside_the_data_roots_is_refused(run_setup, tmp_path_factory, settings):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    with pytest.raises(ValidationError) as stored:
        record_update(instance=run_setup["dataset"], fields={"location": str(elsewhere)})
    assert "outside the data roots" in stored.value.message_dict["location"][0]
    run_setup["dataset"].refresh_from_db()
    settings.RADTRUST_DATA_ROOTS = [str(elsewhere)]  # the roots changed after the dataset was stored
    with pytest.raises(ValidationError) as caught:
        services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"])
    message = caught.value.message_dict["dataset"][0]
    assert "outside the data roots" in message and str(elsewhere) not in message and str(run_setup["root"]) not in message


def test_a_failed_run_leaves_other_runs_untouched(run_setup):
    good = services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"], config={"n_resamples": 20})
    services.run_execute(run_id=good.pk, worker="w")
    (run_setup["root"] / "img" / "0.npy").unlink()
    _failed(_run(run_setup), "unreadable_images")
    good.refresh_from_db()
    assert good.status == RunStatus.SUCCEEDED and good.results is not None


def test_time_limit_fails_the_run_with_its_reason(run_setup, monkeypatch):
    """Celery raises SoftTimeLimitExceeded inside the task when the soft limit passes."""
    from celery.exceptions import SoftTimeLimitExceeded

    def too_slow(*args, **kwargs):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(services, "evaluate", too_slow)  # where the run calls the engine
    _failed(_run(run_setup), "time_limit", "exceeded its time limit")
