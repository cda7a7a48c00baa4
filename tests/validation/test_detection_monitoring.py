"""A detection run's drift, robustness and calibration through the real task path: the first run
says why it has no drift comparison, a rerun of the same data against it raises no alert, the
same volumes brightened by a planted offset raise input-drift alerts through post-market
monitoring, and the run page says all of it in words."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from django.test import Client
from django.urls import reverse

from compliance.models import Alert
from radtrust_demo import lesions
from validation import services
from validation.baselines import run_set_baseline
from validation.choices import RunStatus

pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore::FutureWarning")]
CONFIG = {
    "n_resamples": 200,
    "min_patients": 3,
    "attributes": ["sex"],
    "intersections": [],
    "analyses": ["calibration", "drift", "robustness"],
    "sample_max_cases": 10,
}
OFFSET_HU = 150.0


def _brightened(root: Path) -> str:
    """The same volumes with every voxel raised by ``OFFSET_HU`` (a recalibrated scanner), their
    annotations and a manifest naming them; returns the manifest's name."""
    import nibabel

    (root / "bright").mkdir()
    with open(root / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    with open(root / "annotations.csv", newline="") as handle:
        annotations = list(csv.DictReader(handle))
    for row in rows:
        image = nibabel.load(root / row["image_path"])
        bright = np.asarray(image.dataobj, dtype=np.float32) + OFFSET_HU
        name = row["image_path"].replace("volumes/", "bright/")
        nibabel.save(nibabel.Nifti1Image(bright, image.affine), root / name)
        row["image_path"], row["annotations"] = name, "annotations-bright.csv"
    for a in annotations:
        a["case_id"] = a["case_id"].replace("volumes/", "bright/")
    for name, table in (("manifest-bright.csv", rows), ("annotations-bright.csv", annotations)):
        with open(root / name, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    return "manifest-bright.csv"


@pytest.fixture
def detector(personas, isolated_storage, tmp_path):
    """A registered nodule detector and a North dataset of 24 generated CT volumes (24 patients), granted to its provider."""
    from registry.models import Dataset
    from registry.services import record_create, version_register
    from tests.factories import DataUseGrantFactory, FoundationModelFactory

    root = Path(isolated_storage) / "data" / "nodule-ct-24"
    lesions.write_nodule_volumes(root, n_volumes=24, seed=5)
    model = FoundationModelFactory(provider=personas["engineer"].institution, task="detection", modality="CT")
    dataset = record_create(
        model=Dataset,
        actor=personas["engineer"],
        fields={"name": "North nodule CT 24", "institution": personas["clinician_north"].institution, "modality": "CT", "location": str(root)},
    )
    DataUseGrantFactory(dataset=dataset, grantee=model.provider)
    with open(lesions.detector_onnx(tmp_path / "detector.onnx"), "rb") as handle:
        version = version_register(
            actor=personas["engineer"],
            foundation_model=model,
            version="1.0.0",
            model_file=("detector.onnx", handle),
            output_schema=lesions.DETECTOR_SCHEMA,
            preprocessing=lesions.PREPROCESSING,
        )
    return {"root": root, "version": version, "dataset": dataset, "engineer": personas["engineer"]}


def _run(detector, manifest: str):
    run = services.run_create(actor=detector["engineer"], version=detector["version"], dataset=detector["dataset"], config=CONFIG, manifest=manifest)
    services.run_execute(run_id=run.pk, worker="w")
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    return run


def test_detection_drift_alerts_on_a_planted_shift_only_and_robustness_and_calibration_are_reported(detector):
    first = _run(detector, "manifest.csv")
    detection = first.results["detection"]
    assert "no baseline run" in first.results["drift"]["error"]
    robustness = detection["robustness"]
    assert robustness["n_cases"] == 10 and {n["perturbation"] for n in robustness["not_applicable"]} == {"rotation", "translation"}
    assert {c["condition"] for c in robustness["conditions"]} | {f["condition"] for f in robustness["failed"]} >= {"gaussian_noise@3", "blur@3"}
    passes = first.results["inference"]["forward_passes_by_stage"]
    assert passes["inference"] == 24 and passes["robustness"] == 10 * 27  # 9 perturbations x 3 severities apply to CT detection
    assert detection["calibration"]["ece"]["ci_low"] is not None

    run_set_baseline(actor=detector["engineer"], run=first)
    again = _run(detector, "manifest.csv")
    drift = again.results["drift"]
    assert drift["baseline"]["run"] == first.pk and drift["findings"] == []
    assert drift["outputs"]["max_score_nodule"]["ks_statistic"] == 0.0 and drift["performance"]["lesions"]["metrics"][0]["delta"] == 0.0
    assert not Alert.objects.filter(run=again).exists()

    shifted = _run(detector, _brightened(detector["root"]))
    alerts = set(Alert.objects.filter(run=shifted).values_list("kind", "subject"))
    assert ("input_drift", "image_mean") in alerts
    assert shifted.results["drift"]["inputs"]["image_mean"]["current_mean"] == pytest.approx(
        shifted.results["drift"]["inputs"]["image_mean"]["reference_mean"] + OFFSET_HU, abs=1.0
    )

    client = Client()
    client.force_login(detector["engineer"])
    page = client.get(reverse("runs:detail", args=[shifted.pk])).content.decode()
    assert "Robustness to image perturbations" in page and "moves the anatomy" in page
    assert "image_mean drifted" in page and "Calibration of the detection scores" in page
    assert "Lesion detection: CPM" in page and "Not applicable: small in-plane rotation" in page
