"""The synthetic radiology dataset and the CNN trained on it: real files read by
the real loaders, a real ONNX model, and the planted gaps found by the engine."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pydicom
import pytest

from radtrust_demo.data import (
    AGE_CONTRAST_FACTOR,
    MANIFEST_COLUMNS,
    OLD_AGE,
    SCANNERS,
    generate_dataset,
    sample_cases,
    synthesize_image,
    train_classifier,
)
from radtrust_engine.images import fill_attributes_from_headers, load_image, read_dicom_attributes
from radtrust_engine.loading import ATTRIBUTE_COLUMNS, read_manifest
from radtrust_engine.metrics import auroc
from radtrust_engine.preprocessing import Preprocessing
from radtrust_engine.stratification import age_band, stratified_metrics

pytestmark = pytest.mark.slow  # generates demo data and trains the demo model


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("demo") / "cxr", n_images=1500, seed=1)


@pytest.fixture(scope="module")
def manifest(dataset):
    return read_manifest(dataset.manifest, dataset.root, label_columns=["nodule"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_classifier(tmp_path_factory.mktemp("model"), seed=0, n_train=2000)


def _probabilities(model_path: Path, spec: dict, paths: list[Path]) -> np.ndarray:
    """The model's probabilities on images read and preprocessed as a validation run does."""
    preprocessing = Preprocessing.from_spec(spec)
    batch = np.stack([preprocessing.apply(load_image(path).array) for path in paths])
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(["probability"], {"image": batch})
    return probabilities


@pytest.fixture(scope="module")
def scores(trained, manifest) -> np.ndarray:
    paths = [manifest.absolute_path(i) for i in range(len(manifest))]
    probabilities = _probabilities(trained.onnx_path, trained.preprocessing, paths)
    assert probabilities.shape == (len(manifest), 1)
    return probabilities[:, 0]


def test_manifest_reads_with_the_engine_attribute_columns(dataset, manifest):
    with dataset.manifest.open(newline="") as handle:
        header = next(csv.reader(handle))
    assert header == [*MANIFEST_COLUMNS, "nodule"]
    assert set(ATTRIBUTE_COLUMNS) <= set(header)
    assert len(manifest) == dataset.n_images == 1500
    assert len(set(manifest.patient_ids)) == dataset.n_patients
    images_per_patient = np.unique(manifest.patient_ids, return_counts=True)[1]
    assert images_per_patient.min() == 1 and images_per_patient.max() == 3
    assert 0.25 < manifest.labels.mean() < 0.35
    assert dataset.prevalence == pytest.approx(manifest.labels.mean())
    attributes = manifest.attributes
    assert set(attributes["site"]) == {"site-a", "site-b", "site-c"} == set(dataset.sites)
    assert set(dataset.vendors) == {"Vendor A", "Vendor B"}
    assert set(attributes["sex"]) == {"F", "M"}
    assert 20 <= min(attributes["age"]) and max(attributes["age"]) <= 90
    assert len(set(attributes["race_ethnicity"])) >= 3
    assert all(date is not None for date in manifest.study_dates)
    for pid in set(manifest.patient_ids):  # a patient has one label, one site
        rows = [i for i, p in enumerate(manifest.patient_ids) if p == pid]
        assert len({int(manifest.labels[i, 0]) for i in rows}) == 1
        assert len({attributes["site"][i] for i in rows}) == 1


def test_missing_scanner_cells_are_filled_from_the_dicom_headers(dataset, manifest):
    missing = [i for i, vendor in enumerate(manifest.attributes["scanner_manufacturer"]) if vendor is None]
    assert len(missing) == dataset.missing_scanner_cells
    assert 0.02 * len(manifest) < len(missing) < 0.08 * len(manifest)
    assert [manifest.attributes["scanner_model"][i] for i in missing] == [None] * len(missing)

    fill = fill_attributes_from_headers(manifest)
    assert fill.unreadable == []
    assert fill.filled["scanner_manufacturer"] == fill.filled["scanner_model"] == len(missing)
    by_site = {s.site: (s.manufacturer, s.model) for s in SCANNERS}
    filled = fill.manifest.attributes
    for i in missing:
        assert (filled["scanner_manufacturer"][i], filled["scanner_model"][i]) == by_site[filled["site"][i]]


def test_dicom_headers_carry_the_manifest_attributes(manifest):
    vendor_b = next(i for i, site in enumerate(manifest.attributes["site"]) if site == "site-c")
    for i in (0, 1, 2, vendor_b):
        path = manifest.absolute_path(i)
        header = read_dicom_attributes(path)
        assert header["sex"] == manifest.attributes["sex"][i]
        assert header["age"] == manifest.attributes["age"][i]
        assert header["study_date"] == manifest.study_dates[i]
        scanner = next(s for s in SCANNERS if s.site == manifest.attributes["site"][i])
        assert (header["scanner_manufacturer"], header["scanner_model"]) == (scanner.manufacturer, scanner.model)

        ds = pydicom.dcmread(path)
        assert ds.Modality == "DX"
        assert ds.PhotometricInterpretation == "MONOCHROME2"
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.pixel_array.dtype == np.uint16 and ds.pixel_array.shape == (64, 64)
        assert ds.PatientAge == f"{int(manifest.attributes['age'][i]):03d}Y"
        assert float(ds.RescaleSlope) == scanner.rescale_slope
        assert float(ds.RescaleIntercept) == scanner.rescale_intercept
        pixels = load_image(path).array  # rescale applied
        np.testing.assert_allclose(pixels, ds.pixel_array * scanner.rescale_slope + scanner.rescale_intercept)


def test_png_npy_and_dicom_hold_the_same_image(tmp_path):
    loaded = {}
    for fmt in ("dicom", "png", "npy"):
        summary = generate_dataset(tmp_path / fmt, n_images=12, seed=5, fmt=fmt)
        rows = read_manifest(summary.manifest, summary.root, label_columns=["nodule"])
        assert all(p.endswith({"dicom": ".dcm", "png": ".png", "npy": ".npy"}[fmt]) for p in rows.image_paths)
        loaded[fmt] = np.stack([load_image(rows.absolute_path(i)).array for i in range(len(rows))])
    assert loaded["npy"].shape == (12, 64, 64)
    # Only the 16-bit quantisation differs (site-c stores half units: slope 0.5).
    np.testing.assert_allclose(loaded["dicom"], loaded["npy"], atol=0.5)
    np.testing.assert_allclose(loaded["png"], loaded["npy"], atol=0.5)


def test_planted_age_effect_lowers_nodule_contrast():
    """The same draw for a 64- and a 65-year-old: same anatomy and nodule, 0.4x the lift."""
    case = sample_cases(np.random.default_rng(0), 1)[0]
    young = replace(case, age=OLD_AGE - 1, positive=True, site="site-a")
    (young_pixels, mask), (old_pixels, old_mask), (background, no_mask) = (
        synthesize_image(np.random.default_rng(9), c) for c in (young, replace(young, age=OLD_AGE), replace(young, positive=False))
    )
    assert mask.any() and not no_mask.any()
    np.testing.assert_array_equal(mask, old_mask)
    lift_young = (young_pixels - background)[mask].mean()
    lift_old = (old_pixels - background)[mask].mean()
    assert lift_young > 0
    assert lift_old == pytest.approx(AGE_CONTRAST_FACTOR * lift_young, rel=0.05)


def test_summary_names_the_planted_effects(dataset):
    summary = json.loads(json.dumps(dataset.to_dict()))
    effects = {(e["attribute"], e["group"]) for e in summary["planted_effects"]}
    assert effects == {("age", "65+"), ("site", "site-c")}
    assert summary["manifest"] == str(dataset.manifest)
    assert summary["n_images"] == 1500 and summary["format"] == "dicom"


def test_trained_model_spec_and_signature(trained):
    spec = Preprocessing.from_spec(trained.preprocessing)
    assert spec.resize == (64, 64) and spec.channels == 1
    assert trained.output_schema == {"class_names": ["nodule"], "thresholds": {"nodule": trained.threshold}}
    assert 0 < trained.threshold < 1
    assert trained.train_auroc > 0.9
    session = ort.InferenceSession(str(trained.onnx_path), providers=["CPUExecutionProvider"])
    (image,) = session.get_inputs()
    (probability,) = session.get_outputs()
    assert image.name == "image" and image.type == "tensor(float)"
    assert isinstance(image.shape[0], str) and image.shape[1:] == [1, 64, 64]
    assert probability.name == "probability" and probability.shape[1:] == [1]
    json.dumps(trained.to_dict())


def test_model_is_good_overall_on_a_generated_test_set(manifest, scores):
    assert ((scores >= 0) & (scores <= 1)).all()
    assert auroc(manifest.labels[:, 0], scores) > 0.8


def test_stratified_metrics_find_the_planted_age_and_site_gaps(manifest, scores, trained):
    report = stratified_metrics(
        manifest.labels[:, 0],
        scores,
        manifest.patient_ids,
        {"age_band": age_band(manifest.attributes["age"]), "site": manifest.attributes["site"]},
        threshold=trained.threshold,
        n_resamples=200,
    )
    assert report.overall.metrics["auroc"].value > 0.8
    age_gap = report.gap("auroc_gap", ["age_band"])
    assert age_gap.group_low == ("65+",)
    assert age_gap.ci_low > 0
    site_gap = report.gap("auroc_gap", ["site"])
    assert site_gap.group_low == ("site-c",)
    assert site_gap.ci_low > 0
    old = report.subgroup(["age_band"], ["65+"]).metrics["sensitivity"].value
    middle = report.subgroup(["age_band"], ["40-64"]).metrics["sensitivity"].value
    assert old < middle


def test_same_seed_writes_identical_files(tmp_path):
    first = generate_dataset(tmp_path / "a", n_images=20, seed=7)
    second = generate_dataset(tmp_path / "b", n_images=20, seed=7)
    other = generate_dataset(tmp_path / "c", n_images=20, seed=8)
    assert first.manifest.read_bytes() == second.manifest.read_bytes()
    assert first.manifest.read_bytes() != other.manifest.read_bytes()
    files = sorted(p.relative_to(first.root) for p in first.root.rglob("*.dcm"))
    assert len(files) == 20
    assert files == sorted(p.relative_to(second.root) for p in second.root.rglob("*.dcm"))
    for relative in files:
        assert (first.root / relative).read_bytes() == (second.root / relative).read_bytes()


def test_datasets_of_different_seeds_share_no_patient(tmp_path):
    """Each seed draws new patients; a shared id would pair strangers in the baseline comparison."""
    ids = {}
    for seed in (7, 8):
        summary = generate_dataset(tmp_path / str(seed), n_images=20, seed=seed, fmt="npy")
        with summary.manifest.open(newline="") as handle:
            ids[seed] = {row["patient_id"] for row in csv.DictReader(handle)}
    assert ids[7] and ids[8] and not ids[7] & ids[8]
    assert all(pid.startswith("D7-P") for pid in ids[7])


def test_same_seed_trains_the_same_model(tmp_path, manifest):
    paths = [manifest.absolute_path(i) for i in range(16)]
    runs = [train_classifier(tmp_path / name, seed=3, n_train=160, epochs=1) for name in ("a", "b")]
    assert runs[0].preprocessing == runs[1].preprocessing
    assert runs[0].threshold == runs[1].threshold
    outputs = [_probabilities(run.onnx_path, run.preprocessing, paths) for run in runs]
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="fmt must be one of dicom, png, npy"):
        generate_dataset(tmp_path, n_images=1, fmt="jpeg")


def test_robustness_finds_the_noise_drop_on_images_read_once(manifest, trained):
    """The full run with robustness: noise at 5 dB SNR hurts the nodule CNN, with a paired CI below 0."""
    from radtrust_engine.pipeline import SuiteConfig, evaluate
    from radtrust_engine.runner import open_session, select_device

    result = evaluate(
        open_session(trained.onnx_path, select_device(prefer_gpu=False)),
        manifest,
        task="binary",
        class_names=["nodule"],
        thresholds=trained.output_schema["thresholds"],
        preprocessing=Preprocessing.from_spec(trained.preprocessing),
        config=SuiteConfig(attributes=("site",), intersections=(), n_resamples=200, analyses=("robustness",), sample_max_cases=400),
        modality="DX",
    ).report
    robustness = result["results"]["nodule"]["robustness"]
    assert result["images_read_per_image"] == 1.0 and robustness["n_cases"] == 400
    conditions = {c["condition"]: c for c in robustness["conditions"]}
    assert len(conditions) + len(robustness["failed"]) == 11 * 3  # the MR-only perturbations do not apply to DX
    noisy = conditions["gaussian_noise@3"]["metrics"]["auroc"]
    assert noisy["change"] < 0 and noisy["ci_high"] < 0
    assert conditions["gaussian_noise@1"]["metrics"]["auroc"]["change"] > noisy["change"]
    worst = robustness["worst_case"]["metrics"]["auroc"]["change"]
    assert worst == min(c["metrics"]["auroc"]["change"] for c in conditions.values())


def test_uncertainty_flags_cases_for_a_target_risk(manifest, trained):
    """TTA on the kept cases: a referral share that meets the target risk, and flagged cases listed."""
    from radtrust_engine.pipeline import SuiteConfig, evaluate
    from radtrust_engine.runner import open_session, select_device

    report = evaluate(
        open_session(trained.onnx_path, select_device(prefer_gpu=False)),
        manifest,
        task="binary",
        class_names=["nodule"],
        thresholds=trained.output_schema["thresholds"],
        preprocessing=Preprocessing.from_spec(trained.preprocessing),
        config=SuiteConfig(attributes=("site",), intersections=(), n_resamples=50, analyses=("uncertainty",), sample_max_cases=600, target_risk=0.1),
    ).report
    uncertainty = report["results"]["nodule"]["uncertainty"]
    referral = uncertainty["referral"]
    assert uncertainty["n_cases"] == 600 and len(uncertainty["augmentations"]) == 8
    assert referral["reachable"] and referral["risk"] <= 0.1 and 0 < referral["referred_share"] < 1
    assert uncertainty["n_flagged"] == round(referral["referred_share"] * 600)
    flagged = uncertainty["flagged_cases"]
    assert flagged and all(c["uncertainty"] > referral["cutoff"] for c in flagged)
    assert [c["uncertainty"] for c in flagged] == sorted((c["uncertainty"] for c in flagged), reverse=True)
    assert manifest.image_paths[flagged[0]["row"] - 1] == flagged[0]["image_path"]
    curve = uncertainty["coverage_risk"]
    assert curve["aurc_optimal"] <= curve["aurc"] < curve["risk_full_coverage"]  # confident cases are right more often
    assert report["images_read_per_image"] == 1.0


def test_generalisation_finds_the_site_shift(manifest, scores, trained):
    """Leave-one-site-out: dropping the noisy site raises the pooled AUROC most; site-c sits below pooled."""
    from radtrust_engine.generalisation import generalisation_report

    site = {"site": np.asarray(manifest.attributes["site"], dtype=str)}
    y, pid = manifest.labels[:, 0], np.asarray(manifest.patient_ids)
    threshold = trained.output_schema["thresholds"]["nodule"]
    stratified = stratified_metrics(y, scores, pid, site, threshold=threshold, n_resamples=200, min_patients=10)
    report = generalisation_report(stratified, y, scores, pid, site, n_resamples=200, seed=0, confidence=0.95)
    site = report["groupings"]["site"]
    by_site = {g["group"]: g for g in site["groups"]}
    assert by_site["site-c"]["difference_from_pooled"] < 0
    assert max(by_site, key=lambda k: by_site[k]["leave_one_out"]["auroc"]["value"]) == "site-c"
    assert site["leave_one_out_spread"] > 0
    assert report["not_evaluated"] == [{"grouping": "scanner_manufacturer", "reason": "not among the run's attributes, or not collected"}]
