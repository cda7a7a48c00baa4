"""Detection and 3D volume segmentation runs through the real task path (version registered with its
output schema, run created and executed by the service): their report sections, the readers, the
skipped cases with reasons, the FROC chart and the run page."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from radtrust_demo import lesions
from radtrust_engine.report import RunReport
from validation import services
from validation.choices import RunFileKind, RunStatus
from validation.mlflow_log import report_metrics

pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore::FutureWarning")]
CONFIG = {"n_resamples": 200, "min_patients": 3, "attributes": ["sex"], "intersections": []}


@pytest.fixture
def nodules(personas, isolated_storage):
    """The generated nodule CT set as a North dataset granted to the provider, with a detection and a segmentation model."""
    from registry.models import Dataset
    from registry.services import record_create
    from tests.factories import DataUseGrantFactory, FoundationModelFactory

    root = Path(isolated_storage) / "data" / "nodule-ct"
    data = lesions.write_nodule_volumes(root)
    provider = personas["engineer"].institution
    models = {task: FoundationModelFactory(provider=provider, task=task, modality="CT") for task in ("detection", "segmentation")}
    dataset = record_create(
        model=Dataset,
        actor=personas["engineer"],
        fields={"name": "North nodule CT", "institution": personas["clinician_north"].institution, "modality": "CT", "location": str(root)},
    )
    DataUseGrantFactory(dataset=dataset, grantee=provider)
    return {"root": root, "data": data, "models": models, "dataset": dataset, "engineer": personas["engineer"]}


def _register(nodules, onnx_path: Path, schema: dict, number: str = "1.0.0", *, task: str = "detection"):
    from registry.services import version_register

    with open(onnx_path, "rb") as handle:
        return version_register(
            actor=nodules["engineer"],
            foundation_model=nodules["models"][task],
            version=number,
            model_file=(onnx_path.name, handle),
            output_schema=schema,
            preprocessing=lesions.PREPROCESSING,
        )


def _run(nodules, version, manifest: str):
    run = services.run_create(actor=nodules["engineer"], version=version, dataset=nodules["dataset"], config=CONFIG, manifest=manifest)
    services.run_execute(run_id=run.pk, worker="w")
    run.refresh_from_db()
    return run


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _write_rows(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_a_detection_run_reports_froc_cpm_strata_subgroups_calibration_and_readers(nodules, tmp_path):
    from sklearn.metrics import cohen_kappa_score

    version = _register(nodules, lesions.detector_onnx(tmp_path / "detector.onnx"), lesions.DETECTOR_SCHEMA)
    run = _run(nodules, version, "manifest.csv")
    assert run.status == RunStatus.SUCCEEDED, run.error
    report = run.results
    assert report["task"] == "detection" and report["skipped"] == []
    detection = report["detection"]
    overall = detection["overall"]
    assert detection["dimensions"] == "3D"
    assert (overall["n_cases"], overall["n_lesions"]) == (nodules["data"].n_volumes, nodules["data"].n_nodules)
    assert overall["fp_per_image"] == [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
    sens = overall["sensitivity"]
    assert sens == sorted(sens) and 0 < sens[0] <= sens[-1] <= 1
    assert overall["cpm"]["value"] == pytest.approx(np.mean(sens), abs=1e-3)
    assert all(lo <= s <= hi for s, lo, hi in zip(sens, overall["low"], overall["high"], strict=True))
    assert sum(s["n_lesions"] for s in detection["size_strata"]) == overall["n_lesions"]
    assert {g["value"] for g in detection["subgroups"]} == {"F", "M"}
    assert detection["calibration"]["n"] == overall["n_detections"]
    # readers: Cohen's kappa between the two readers' columns, against scikit-learn
    rows = _rows(nodules["data"].manifest)
    a, b = [int(r["reader:a:nodule"]) for r in rows], [int(r["reader:b:nodule"]) for r in rows]
    readers = report["readers"]["nodule"]
    assert readers["kappa"]["value"] == pytest.approx(cohen_kappa_score(a, b), abs=1e-3)
    assert sum(x != y for x, y in zip(a, b, strict=True)) == nodules["data"].reader_flips
    charts = set(run.files.filter(kind=RunFileKind.CHART).values_list("name", flat=True))
    assert {"charts/froc.svg", "charts/reliability-detection-scores.svg"} <= charts
    metrics = report_metrics(RunReport.from_dict(report))  # what the MLflow copy of the run holds
    assert metrics["detection/cpm"] == overall["cpm"]["value"] and metrics["detection/sensitivity_at_0.125_fp"] == sens[0]
    dataset = nodules["dataset"]
    dataset.refresh_from_db()  # the datasheet's blank rater fields are filled from the run
    assert dataset.rater_count == 2
    assert dataset.rater_agreement.startswith(f"Cohen's kappa {readers['kappa']['value']:.3g}") and f"(run {run.pk})" in dataset.rater_agreement


def test_a_volume_run_scores_each_volume_like_a_direct_computation_and_gives_the_reader_ceiling(nodules, tmp_path):
    import nibabel
    import onnxruntime as ort

    from registry.services import record_update

    record_update(instance=nodules["dataset"], fields={"rater_agreement": "Dice 0.8 in the annotation study"})  # the steward's own words
    onnx_path = lesions.segmenter_onnx(tmp_path / "segmenter.onnx")
    version = _register(nodules, onnx_path, lesions.SEGMENTER_SCHEMA, task="segmentation")
    run = _run(nodules, version, "manifest.csv")
    assert run.status == RunStatus.SUCCEEDED, run.error
    volumes = run.results["volumes"]
    assert run.results["task"] == "volume_segmentation"
    assert run.results["drift"]["error"] == "drift against a baseline is computed for classification and detection runs only"
    assert volumes["n_volumes"] == nodules["data"].n_volumes
    session = ort.InferenceSession(str(onnx_path))
    root = nodules["root"]

    def load(path):
        return np.asarray(nibabel.load(str(root / path)).get_fdata(), dtype=np.float32).transpose(2, 1, 0)

    dices, ceilings = [], []
    for row in _rows(nodules["data"].manifest):
        window = lesions.WINDOW
        low = window["center"] - window["width"] / 2
        x = (np.clip(load(row["image_path"]), low, low + window["width"]) - low) / window["width"]
        predicted = session.run(None, {"volume": x[None, None].astype(np.float32)})[0][0, 0] >= 0.5  # pointwise: whole volume = windows
        truth = load(row["mask_path"]) > 0
        total = predicted.sum() + truth.sum()
        dices.append(1.0 if total == 0 else 2 * (predicted & truth).sum() / total)
        reader_b = load(row["reader:b:mask"]) > 0
        both = truth.sum() + reader_b.sum()
        ceilings.append(1.0 if both == 0 else 2 * (truth & reader_b).sum() / both)
    stored = {v["image_path"]: v["nodule"]["dice"] for v in volumes["volumes"]}
    assert list(stored.values()) == pytest.approx(dices, abs=1e-4)
    summary = volumes["structures"]["nodule"]
    assert summary["dice"]["mean"] == pytest.approx(np.mean(dices), abs=1e-4)
    assert summary["dice"]["low"] <= summary["dice"]["mean"] <= summary["dice"]["high"]
    assert {"hd95", "surface_dice", "volume_error"} <= set(summary)
    assert run.results["readers"]["mask"]["dice_ceiling"]["nodule"] == pytest.approx(np.mean(ceilings), abs=1e-4)
    nodules["dataset"].refresh_from_db()
    assert (nodules["dataset"].rater_count, nodules["dataset"].rater_agreement) == (2, "Dice 0.8 in the annotation study")


def test_bad_cases_are_skipped_with_their_reasons_and_the_run_goes_on(nodules, tmp_path):
    from tests.validation.test_volumes import write_series

    root = nodules["root"]
    write_series(root / "series-gap", [0.0, 2.0, 4.0, 8.0, 10.0])  # a slice missing
    write_series(root / "series-uneven", [0.0, 2.0, 4.5, 6.0])
    rows = _rows(nodules["data"].manifest)
    extra = dict(rows[0])
    bad = [
        {**extra, "image_path": "series-gap", "patient_id": "q1", "reader:b:nodule": "maybe"},
        {**extra, "image_path": "series-uneven", "patient_id": "q2"},
        {**extra, "image_path": "volumes/missing.nii.gz", "patient_id": "q3"},
        {**extra, "image_path": "volumes/outside.nii.gz", "patient_id": "q4"},
        {**extra, "image_path": "volumes/unlisted.nii.gz", "patient_id": "q5"},
    ]
    for name in ("outside", "unlisted"):
        (root / "volumes" / f"{name}.nii.gz").write_bytes((root / "volumes" / "ct-00.nii.gz").read_bytes())
    with open(root / "annotations.csv", "a", newline="") as handle:
        handle.write("series-gap,,,,,\nseries-uneven,,,,,\nvolumes/missing.nii.gz,,,,,\n")
        handle.write("volumes/outside.nii.gz,nodule,60,10,10,3\n")  # x = 60 beyond the 48-voxel width
    _write_rows(root / "detection-bad.csv", rows + bad)
    version = _register(nodules, lesions.detector_onnx(tmp_path / "detector.onnx"), lesions.DETECTOR_SCHEMA)
    run = _run(nodules, version, "detection-bad.csv")
    assert run.status == RunStatus.SUCCEEDED, run.error
    reasons = {s["image_path"]: s["reason"] for s in run.results["skipped"]}
    assert set(reasons) == {"series-gap", "series-uneven", "volumes/missing.nii.gz", "volumes/outside.nii.gz", "volumes/unlisted.nii.gz"}
    assert "slice(s) missing" in reasons["series-gap"] and "inconsistent slice spacing" in reasons["series-uneven"]
    assert "no file" in reasons["volumes/missing.nii.gz"]
    assert "does not list this case" in reasons["volumes/unlisted.nii.gz"]
    assert "outside the image" in reasons["volumes/outside.nii.gz"]
    assert run.results["detection"]["overall"]["n_cases"] == len(rows)
    readers = run.results["readers"]["nodule"]
    left_out = {s["case_id"]: s["reason"] for s in readers["skipped"]}
    assert "unknown or missing reader value" in left_out["series-gap"] and "'maybe'" in left_out["series-gap"]
    assert left_out["series-uneven"] == "no model score for this case"  # the readers' agreement keeps it, the model comparison cannot
    assert readers["n_cases"] == len(rows) + len(bad) - 1


def test_a_volume_over_the_limit_is_skipped_and_a_run_with_nothing_left_fails_with_the_reason(nodules, tmp_path):
    schema = {**lesions.SEGMENTER_SCHEMA, "volume": {**lesions.SEGMENTER_SCHEMA["volume"], "max_voxels": 1000}}
    version = _register(nodules, lesions.segmenter_onnx(tmp_path / "segmenter.onnx"), schema, task="segmentation")
    run = _run(nodules, version, "manifest.csv")
    assert run.status == RunStatus.FAILED and run.error_reason == "unreadable_images"
    assert "above the limit of 1,000" in run.error and "none of the 12 volume(s)" in run.error


def test_a_detection_output_that_breaks_the_contract_skips_every_case_and_fails_the_run(nodules, tmp_path):
    # the segmenter gives one probability volume, not boxes, scores and labels
    version = _register(nodules, lesions.segmenter_onnx(tmp_path / "segmenter.onnx"), lesions.DETECTOR_SCHEMA)
    run = _run(nodules, version, "manifest.csv")
    assert run.status == RunStatus.FAILED and run.error_reason == "unreadable_images"
    assert "the contract is boxes, scores and labels" in run.error


@pytest.mark.parametrize(
    ("task", "schema", "message"),
    [
        ("segmentation", {"task": "volume_segmentation"}, 'needs "volume"'),
        ("segmentation", {"task": "tracking"}, '"task" is one of'),
        ("detection", {"detection": {"match_by": "overlap"}}, "match_by"),
        ("segmentation", {"task": "detection"}, "needs a foundation model whose task is detection"),
        ("detection", {"task": "volume_segmentation", "volume": {"spacing": [1, 1, 1], "patch": [8, 8, 8]}}, "whose task is segmentation"),
        ("segmentation", {"volume": {"spacing": [1, 1, 1], "patch": [8, 8, 8]}}, "applies to a detection model"),
    ],
)
def test_the_registry_refuses_a_task_schema_it_cannot_run(nodules, tmp_path, task, schema, message):
    onnx_path = lesions.segmenter_onnx(tmp_path / "segmenter.onnx")
    with pytest.raises(ValidationError) as caught:
        _register(nodules, onnx_path, {"class_names": ["nodule"], **schema}, task=task)
    assert message in str(caught.value.message_dict["output_schema"])


def test_the_run_page_shows_froc_readers_and_skips_without_paths_for_the_provider(nodules, tmp_path):
    version = _register(nodules, lesions.detector_onnx(tmp_path / "detector.onnx"), lesions.DETECTOR_SCHEMA)
    run = _run(nodules, version, "manifest.csv")
    client = Client()
    client.force_login(nodules["engineer"])
    page = client.get(reverse("runs:detail", args=[run.pk])).content.decode()
    assert "Lesion detection (3D)" in page and "Sensitivity at false positives per image (FROC)" in page
    assert "CPM (mean of the seven)" in page and "By lesion size" in page
    assert "Reader variability" in page and "Cohen&#x27;s kappa" in page
    assert "FROC curve: lesion-level detection" in page
    assert "volumes/ct-00.nii.gz" not in page  # the provider does not see the hospital's case names


def test_the_froc_chart_is_an_svg_with_its_text_alternative():
    from validation.charts import froc_chart

    overall = {
        "n_cases": 4,
        "n_lesions": 5,
        "fp_per_image": [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0],
        "sensitivity": [0.2, 0.4, 0.4, 0.6, 0.8, 1.0, 1.0],
        "low": [0.0, 0.1, 0.1, 0.3, 0.5, 1.0, 1.0],
        "high": [0.5, 0.7, 0.7, 0.9, 1.0, 1.0, 1.0],
        "cpm": {"value": 0.629, "low": 0.4, "high": 0.8},
        "curve": {"fp_per_image": [0.0, 0.25, 1.0, 4.0], "sensitivity": [0.0, 0.4, 0.6, 1.0]},
    }
    chart = froc_chart({"overall": overall}, confidence=0.95)
    assert chart.name == "froc" and chart.svg.startswith("<?xml")
    assert "CPM 0.629 (0.400 to 0.800), 95% CI" in chart.alt and "5 lesions in 4" in chart.alt
    assert "1/8" in chart.svg and "False positives per image" in chart.svg


def test_the_technical_documentation_cites_the_detection_results_with_their_froc_chart(nodules, tmp_path):
    from compliance.document_evidence import Attachments, evidence_elements
    from compliance.documents import snapshot_attachments
    from compliance.dossier_evidence import dossier_evidence
    from registry.services import provenance_link

    version = _register(nodules, lesions.detector_onnx(tmp_path / "detector.onnx"), lesions.DETECTOR_SCHEMA)
    provenance_link(actor=nodules["engineer"], version=version, dataset=nodules["dataset"], role="external_validation")  # its test data
    run = _run(nodules, version, "manifest.csv")
    evidence = dossier_evidence(version, {"detection_volumes"})
    data = evidence["detection_volumes"]
    assert (data["run"], data["task"], data["volumes"]) == (run.pk, "detection", None)
    assert "curve" not in data["detection"]["overall"]  # aggregates only in the dossier
    attachments = snapshot_attachments(version, evidence)
    assert [c["name"] for c in attachments["charts"]] == ["charts/froc.svg", "charts/reliability-detection-scores.svg"]
    elements = evidence_elements("detection_volumes", data, Attachments())
    captions = [getattr(e, "caption", "") for e in elements]
    assert "Lesion detection (3D): Sensitivity at false positives per image (FROC)" in captions
    assert "Reader variability: Agreement between readers, and the model among them" in captions
    cpm = next(e for e in elements if getattr(e, "caption", "").endswith("(FROC)")).rows[-1]
    assert cpm[0] == "CPM (mean of the seven)" and cpm[1].startswith(f"{data['detection']['overall']['cpm']['value']:.3g}")


def test_the_demo_ct_part_registers_validates_and_reports_what_was_planted(personas, institutions, isolated_storage):
    from radtrust_demo.ct import CT_SUITE, ct_lines, ct_setup
    from registry.services import user_create

    steward = user_create(username="north-steward", role="compliance_officer", institution=institutions["north"])
    engineer = personas["engineer"]
    setup = ct_setup(engineer=engineer, steward=steward, provider=institutions["vendor"], site=institutions["north"], out=lambda _: None)
    assert (
        ct_setup(engineer=engineer, steward=steward, provider=institutions["vendor"], site=institutions["north"], out=lambda _: None).detector
        == setup.detector
    )
    assert (setup.detector.foundation_model.task, setup.segmenter.task_spec.task) == ("detection", "volume_segmentation")
    runs = []
    for version in (setup.detector, setup.segmenter):
        run = services.run_create(actor=engineer, version=version, dataset=setup.dataset, config=CT_SUITE)
        assert services.run_execute(run_id=run.pk, worker="w") == RunStatus.SUCCEEDED
        run.refresh_from_db()
        runs.append(run)
    lines = ct_lines(setup, runs)
    assert f"{setup.data.n_nodules} nodules in 12 volumes; reader b disagrees on 3 volumes" in lines[0]
    assert f"run {runs[0].pk}: {setup.data.n_nodules} lesions" in lines[1]
    assert "Cohen's kappa" in lines[2] and f"(run {runs[0].pk})" in lines[2]
    assert "Lesion detection and 3D segmentation results" in lines[-1] and "Sensitivity at false positives per image (FROC)" in lines[-1]


def test_the_volume_run_page_shows_the_structures_and_the_reader_ceiling(nodules, tmp_path):
    version = _register(nodules, lesions.segmenter_onnx(tmp_path / "segmenter.onnx"), lesions.SEGMENTER_SCHEMA, task="segmentation")
    run = _run(nodules, version, "manifest.csv")
    client = Client()
    client.force_login(nodules["engineer"])
    page = client.get(reverse("runs:detail", args=[run.pk])).content.decode()
    dice = run.results["volumes"]["structures"]["nodule"]["dice"]
    assert "Volume segmentation (3D)" in page and "Per structure (mean over volumes, CI)" in page
    assert f"{dice['mean']:.3g} ({dice['low']:.3f} to {dice['high']:.3f})" in page
    assert "Inter-reader Dice (readers a, b, 12 volumes)" in page
    assert "(withheld: a case of another hospital)" in page and "volumes/ct-00.nii.gz" not in page


def test_a_2d_detection_run_reads_coco_boxes_in_the_image_grid_and_scales_them_to_the_model_input(nodules, tmp_path):
    """Images of 64 x 64 resized to the model's 32 x 32: the COCO boxes (image pixels) are halved
    before matching, so each bright square is found in its cell and nothing else is."""
    import json

    root = nodules["root"] / "films"
    root.mkdir()
    images, annotations, rows = [], [], []
    for i in range(8):
        image = np.zeros((64, 64), dtype=np.float32)
        if i % 2 == 0:
            x, y = 18 + 16 * (i % 4 // 2), 18 + 32 * (i // 4)
            image[y : y + 8, x : x + 8] = 1.0
            annotations.append({"id": i, "image_id": i, "bbox": [x, y, 8, 8], "category_id": 1})
        np.save(root / f"{i}.npy", image)
        images.append({"id": i, "file_name": f"films/{i}.npy"})
        rows.append({"image_path": f"films/{i}.npy", "patient_id": f"f{i}", "annotations": "films/boxes.json"})
    (root / "boxes.json").write_text(json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "nodule"}]}))
    _write_rows(nodules["root"] / "films.csv", rows)
    schema = {"class_names": ["nodule"], "detection": {"match_by": "iou", "iou_threshold": 0.2}}
    from registry.services import version_register

    onnx_path = lesions.detector_onnx(tmp_path / "detector-2d.onnx", shape=(32, 32), cell=(8, 8))
    with open(onnx_path, "rb") as handle:
        version = version_register(
            actor=nodules["engineer"],
            foundation_model=nodules["models"]["detection"],
            version="2.0.0",
            model_file=(onnx_path.name, handle),
            output_schema=schema,
            preprocessing={"resize": [32, 32]},
        )
    run = _run(nodules, version, "films.csv")
    assert run.status == RunStatus.SUCCEEDED, run.error
    overall = run.results["detection"]["overall"]
    assert run.results["detection"]["dimensions"] == "2D" and run.results["skipped"] == []
    assert (overall["n_cases"], overall["n_lesions"]) == (8, 4)
    assert overall["sensitivity"] == [1.0] * 7 and overall["cpm"]["value"] == 1.0
